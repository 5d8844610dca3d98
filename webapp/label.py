"""Label pages: every work where the label is a payee, totals per work, period and territory;
API tokens (create shown once, list, revoke)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for

from ledger import accounts, analytics
from ledger.statements import statement

from . import views
from .auth import role_required
from .forms import ActionForm, TokenForm
from .runtime import engine, portal_settings

bp = Blueprint("label", __name__)


def _payee_work(work_id: int) -> None:
    if work_id not in analytics.payee_work_ids(engine(), g.user.address):
        abort(404, description="no such work where you are a payee")


@bp.get("/")
@role_required("label")
def dashboard():
    period = views.period_from_args()
    ids = analytics.payee_work_ids(engine(), g.user.address)
    st = statement(engine(), g.user.address, period)
    report = analytics.plays_by_territory(engine(), ids, portal_settings().k_anonymity, period.first, period.last)
    monthly = analytics.plays_over_time(engine(), ids, "month", period.first, period.last)
    return render_template(
        "label/dashboard.html",
        statement=st,
        territories=report,
        monthly=monthly,
        chart_json=views.script_json(views.chart_payload(ids, period.first, period.last)),
        period=period,
    )


@bp.get("/works/<int:work_id>")
@role_required("label")
def work(work_id: int):
    _payee_work(work_id)
    return render_template("work.html", role="label", action_form=ActionForm(), **views.work_context(work_id))


@bp.get("/statement")
@role_required("label")
def statement_download():
    return views.statement_download(g.user.address)


@bp.get("/balance")
@role_required("label")
def balance():
    return render_template(
        "balance.html",
        form=None,
        balance=analytics.balance(engine(), g.user.address),
        withdrawals=analytics.withdrawals(engine(), g.user.address),
        pending=[],
        statement_endpoint="label.statement_download",
        spent=None,
        budget=None,
    )


@bp.route("/tokens", methods=["GET", "POST"])
@role_required("label")
def tokens():
    form = TokenForm()
    created = None
    if form.validate_on_submit():
        try:
            created = accounts.create_token(engine(), g.user.id, form.name.data)
        except accounts.UserError as exc:
            form.name.errors.append(str(exc))
        else:
            flash("Token created. Copy it now: it is shown only once.", "success")
    status = 400 if form.errors else 201 if created else 200
    return render_template(
        "label/tokens.html",
        form=form,
        created=created,
        revoke_form=ActionForm(),
        tokens=accounts.list_tokens(engine(), g.user.id),
    ), status


@bp.post("/tokens/<int:token_id>/revoke")
@role_required("label")
def revoke(token_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    if not accounts.revoke_token(engine(), g.user.id, token_id):
        abort(404, description="no such live token of yours")
    flash("Token revoked: it no longer opens the API.", "info")
    return redirect(url_for("label.tokens"))
