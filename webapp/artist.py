"""Artist pages: works (register, list, page), distribute, balance and withdraw, statements."""

from __future__ import annotations

from eth_utils import is_address, to_checksum_address
from flask import Blueprint, abort, g, redirect, render_template, request, url_for

from ledger import accounts, analytics, gasless
from ledger.identifiers import IdentifierError, normalize_isrc, normalize_iswc
from ledger.metadata import make_data_uri

from . import signing, views
from .auth import role_required
from .forms import MAX_PAYEES, ActionForm, WithdrawForm, WorkForm
from .money import parse_usd
from .runtime import engine, portal_settings

bp = Blueprint("artist", __name__)
ZERO = "0x" + "0" * 40
DAY = 86_400


def _owned_work(work_id: int):
    info = analytics.work(engine(), work_id)
    if info is None or info.owner != g.user.address:
        abort(404, description="no such work among yours")
    return info


@bp.get("/")
@role_required("artist")
def works():
    owned = analytics.works_owned(engine(), g.user.address)
    indexed = {w.work_id for w in owned}
    pending = [
        a
        for a in gasless.actions_of(engine(), g.user.id)
        if a.kind == "register_work" and (a.status != "confirmed" or a.work_id not in indexed)
    ]
    return render_template("artist/works.html", works=owned, pending=pending)


def _resolve_payee(text: str) -> str:
    text = text.strip()
    if text.lower().startswith("0x"):
        if not is_address(text):
            raise ValueError(f"{text!r} is not an Ethereum address")
        address = to_checksum_address(text)
        if address == ZERO:
            raise ValueError("the zero address cannot be a payee")
        return address
    user = accounts.find_user(engine(), text)
    if user is None:
        raise ValueError(f"no portal user is called {text!r}")
    return user.address


def _check_work_form(form: WorkForm) -> dict | None:
    """The registration's parameters, or None with the errors put on the form's fields."""
    ok = True
    isrc = iswc = None
    if form.isrc.data:
        try:
            isrc = normalize_isrc(form.isrc.data)
            if analytics.work_by_isrc(engine(), isrc) is not None:
                form.isrc.errors.append(f"ISRC {isrc} is already registered: a recording can be registered once")
                ok = False
        except IdentifierError as exc:
            form.isrc.errors.append(str(exc))
            ok = False
    if form.iswc.data:
        try:
            iswc = normalize_iswc(form.iswc.data)
        except IdentifierError as exc:
            form.iswc.errors.append(str(exc))
            ok = False
    payees, bps = [], []
    sent_rows = {key.split("-")[1] for key in request.form if key.startswith("payees-") and key.count("-") == 2}
    if len(sent_rows) > MAX_PAYEES:
        form.payees.errors.append(f"a split has at most {MAX_PAYEES} payees, not {len(sent_rows)}")
        return None
    for row in form.payees:
        text, share = (row.payee.data or "").strip(), row.bps.data
        if not text and not share:
            continue
        if not text or not share:
            row.payee.errors.append("give both a payee and its basis points")
            ok = False
            continue
        try:
            address = _resolve_payee(text)
        except ValueError as exc:
            row.payee.errors.append(str(exc))
            ok = False
            continue
        if address in payees:
            row.payee.errors.append("this payee is already in the split")
            ok = False
            continue
        payees.append(address)
        bps.append(share)
    if ok and not payees:
        form.payees.errors.append("a split needs at least one payee")
        ok = False
    elif ok and sum(bps) != 10_000:
        form.payees.errors.append(f"the shares add up to {sum(bps):,} basis points, not 10,000 (100%)")
        ok = False
    terms = []
    for enabled, kind, fee_field, rate_field, days_field in (
        (form.metered.data, 1, form.metered_fee, form.metered_rate, form.metered_days),
        (form.flat.data, 0, form.flat_fee, None, form.flat_days),
    ):
        if not enabled:
            continue
        try:
            fee = parse_usd(fee_field.data or "0")
        except ValueError as exc:
            fee_field.errors.append(str(exc))
            ok = False
            continue
        rate = 0
        if rate_field is not None:
            try:
                rate = parse_usd(rate_field.data or "")
            except ValueError as exc:
                rate_field.errors.append(str(exc))
                ok = False
                continue
            if rate == 0:
                rate_field.errors.append("a METERED license needs a rate above $0")
                ok = False
                continue
        if not days_field.data:
            days_field.errors.append("give the license period in days")
            ok = False
            continue
        terms.append({"kind": kind, "fee": fee, "rate": rate, "duration": days_field.data * DAY})
    if not ok:
        return None
    return {"title": form.title.data.strip(), "isrc": isrc, "iswc": iswc, "payees": payees, "bps": bps, "terms": terms}


@bp.route("/works/new", methods=["GET", "POST"])
@role_required("artist")
def new_work():
    form = WorkForm()
    if request.method == "GET" and not form.payees[0].payee.data:
        form.payees[0].payee.data = g.user.username
        form.payees[0].bps.data = 10_000
    if form.validate_on_submit():
        params = _check_work_form(form)
        if params is not None:
            then = [{"kind": "set_split", "params": {"payees": params["payees"], "bps": params["bps"]}}]
            then += [{"kind": "set_terms", "params": t} for t in params["terms"]]
            uri = make_data_uri(params["title"], params["iswc"])
            action = gasless.queue_action(
                engine(),
                g.user.id,
                "register_work",
                {"uri": uri, "isrc": params["isrc"], "title": params["title"], "iswc": params["iswc"], "then": then},
            )
            views.run_action(action)
            return redirect(url_for("artist.works"))
    return render_template(
        "artist/new_work.html", form=form, max_payees=MAX_PAYEES
    ), 400 if request.method == "POST" else 200


@bp.get("/works/<int:work_id>")
@role_required("artist")
def work(work_id: int):
    _owned_work(work_id)
    return render_template("work.html", role="artist", action_form=ActionForm(), **views.work_context(work_id))


@bp.post("/works/<int:work_id>/distribute")
@role_required("artist")
def distribute(work_id: int):
    _owned_work(work_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    views.run_action(gasless.queue_action(engine(), g.user.id, "distribute", {}, work_id=work_id))
    return redirect(url_for("artist.work", work_id=work_id))


@bp.route("/balance", methods=["GET", "POST"])
@role_required("artist")
def balance():
    form = WithdrawForm(data={"to": g.user.payout_address or g.user.address})
    if form.validate_on_submit():
        if not is_address(form.to.data) or to_checksum_address(form.to.data) == ZERO:
            form.to.errors.append("not an Ethereum address (0x and 40 hex digits, not zero)")
        elif analytics.balance(engine(), g.user.address).available == 0:
            form.to.errors.append("your balance is $0.00: nothing to withdraw yet")
        else:
            views.run_action(
                gasless.queue_action(engine(), g.user.id, "withdraw", {"to": to_checksum_address(form.to.data)})
            )
            return redirect(url_for("artist.balance"))
    return render_template(
        "balance.html",
        form=form,
        balance=analytics.balance(engine(), g.user.address),
        withdrawals=analytics.withdrawals(engine(), g.user.address),
        pending=gasless.actions_of(engine(), g.user.id, statuses=views.PENDING),
        statement_endpoint="artist.statement",
        spent=gasless.gas_spent(engine(), g.user.id),
        budget=portal_settings().gas_budget,
    ), 400 if form.errors else 200


@bp.get("/statement")
@role_required("artist")
def statement():
    return views.statement_download(g.user.address)


@bp.get("/actions")
@role_required("artist")
def actions():
    return render_template("artist/actions.html", actions=gasless.actions_of(engine(), g.user.id))


@bp.get("/actions/<int:action_id>/typed-data")
@role_required("artist")
def typed_data(action_id: int):
    """The EIP-712 ForwardRequest a wallet signs (eth_signTypedData_v4)."""
    return signing.typed_data_response(signing.own_action(action_id))


@bp.post("/actions/<int:action_id>/signature")
@role_required("artist")
def signature(action_id: int):
    return signing.submit_signature(signing.own_action(action_id))
