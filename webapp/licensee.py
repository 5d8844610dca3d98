"""Licensee pages: the catalogue of works and their terms, a basket bought in one batch purchase
(`buyLicenses`, with the buyer's limits on fee, rate and expiry), licenses held, and escrow (top
up with an ERC-2612 permit, withdraw after the contract's notice). Every on-chain action is a
gasless request (ledger.gasless, "licensee actions"). Devices have pages of their own."""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eth_utils import is_address, to_checksum_address
from flask import Blueprint, abort, flash, g, jsonify, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from ledger import catalogue, gasless
from ledger.chain import LicenseKind
from ledger.errors import LedgerError

from . import signing, views
from .auth import role_required
from .forms import ActionForm
from .money import UNIT, parse_usd, usd
from .runtime import RelayerUnavailable, engine, portal_settings, relayer

log = logging.getLogger(__name__)
bp = Blueprint("licensee", __name__)
ZERO = "0x" + "0" * 40
MAX_BASKET = 50
MAX_RATE = 2**31 - 1  # the contract's MAX_RATE (uint32 rates, 2,147 tokens a play at most)
MINT_LIMIT = 10_000  # whole tokens: TestStablecoin's FAUCET_LIMIT
KINDS = [("METERED", "METERED (per play, from escrow)"), ("FLAT", "FLAT (one-off fee)")]
#: Why the contract refused a purchase, in the buyer's words.
REFUSALS = {
    "FeeAboveMax": "the fees are now above your maximum total fee",
    "RateAboveMax": "the rate per play is now above your maximum rate",
    "ExpiryBelowMin": "a license would end before your minimum expiry",
    "TermsNotOffered": "a work no longer offers this kind of license",
    "ERC20InsufficientBalance": "your token balance does not cover the fees",
    "ERC20InsufficientAllowance": "the permit does not cover the fees",
    "InsufficientEscrow": "your escrow holds less than that",
    "WithdrawalNotYetAvailable": "the notice period has not ended yet",
    "WithdrawalNotRequested": "no withdrawal of that amount was requested",
}


class CheckoutForm(FlaskForm):
    kind = SelectField("License", choices=KINDS, default="METERED")
    max_fee = StringField("Maximum total fee ($)", validators=[DataRequired(), Length(1, 24)])
    max_rate = StringField("Maximum rate per play ($)", validators=[Optional(), Length(1, 24)])
    min_expiry = StringField("Minimum expiry (YYYY-MM-DD, optional)", validators=[Optional(), Length(10, 10)])
    submit = SubmitField("Buy the licenses")


class BasketForm(FlaskForm):
    work_id = IntegerField(validators=[DataRequired(), NumberRange(1, 2**63 - 1)])
    kind = HiddenField(validators=[Optional()])
    submit = SubmitField("Add to basket")


class AmountForm(FlaskForm):
    amount = StringField("Amount ($)", validators=[DataRequired(), Length(1, 24)])
    submit = SubmitField("Go")


class CompleteWithdrawalForm(FlaskForm):
    amount = StringField("Amount ($)", validators=[DataRequired(), Length(1, 24)])
    to = StringField("Send to (any address)", validators=[DataRequired(), Length(42, 42)])
    submit = SubmitField("Withdraw from escrow")


class MintForm(FlaskForm):
    amount = IntegerField("Test tokens", default=1_000, validators=[DataRequired(), NumberRange(1, MINT_LIMIT)])
    submit = SubmitField("Mint test tokens")


# ----------------------------------------------------------------------------- helpers


def _now() -> int:
    return int(time.time())


def _chain():
    """The licensee's view of the chain, or None when the relayer (chain, deployment) is missing."""
    try:
        return gasless.LicenseeChain(relayer())
    except RelayerUnavailable:
        return None


def _live(address: str) -> dict | None:
    """Escrow, pending withdrawal, token balance and chain time, read from the chain (None when
    it cannot be reached: the pages then show the index alone)."""
    chain = _chain()
    if chain is None:
        return None
    try:
        client = chain.client
        amount, available_at = client.escrow_withdrawal_of(address)
        return {
            "escrow": client.escrow_of(address),
            "token": client.token_balance(address),
            "request_amount": amount,
            "available_at": available_at,
            "notice": client.escrow_notice(),
            "now": int(chain.w3.eth.get_block("latest")["timestamp"]),
            "test_token": "TestStablecoin" in chain.relayer.deployment.contracts,
        }
    except Exception:  # noqa: BLE001 - a node that went away: the index still answers
        log.warning("cannot read the licensee's escrow from the chain", exc_info=True)
        return None


def _basket() -> list[int]:
    return [int(w) for w in session.get("basket", [])]


def _save_basket(ids: list[int]) -> None:
    session["basket"] = list(dict.fromkeys(ids))[:MAX_BASKET]


def _explain(action) -> None:
    """Flashes why the chain refused a licensee action, in the buyer's words."""
    done = gasless.get_action(engine(), action.id)
    if done is None or done.status != "failed" or not done.error:
        return
    for name, reason in REFUSALS.items():
        if done.error.startswith(name):
            flash(f"Nothing was bought or moved: {reason} ({done.error}).", "error")
            return


def _run(action) -> None:
    """Runs a licensee action, or leaves a wallet user's waiting for the wallet's permit."""
    if g.user.wallet and gasless.needs_permit(action):
        gasless.set_params(engine(), action.id, action.arguments, status="awaiting_permit")
        flash("Sign the token permit, then the request, with your wallet on the actions page.", "warning")
        return
    views.run_action(action)
    _explain(action)


def _parse_amount(field, what: str = "amount") -> int | None:
    try:
        value = parse_usd(field.data or "")
    except ValueError as exc:
        field.errors.append(str(exc))
        return None
    if value == 0:
        field.errors.append(f"the {what} must be above $0")
        return None
    return value


def _date(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


# ----------------------------------------------------------------------------- catalogue and basket


@bp.get("/")
@role_required("licensee")
def catalogue_page():
    query = request.args.get("q", "")[:100]
    try:
        page = int(request.args.get("page", "1"))
    except ValueError:
        abort(400, description="page is a number")
    if page < 1:
        abort(400, description="page starts at 1")
    found = catalogue.search(engine(), query, page)
    return render_template(
        "licensee/catalogue.html", found=found, query=query, basket=set(_basket()), add_form=BasketForm()
    )


@bp.post("/basket/add")
@role_required("licensee")
def basket_add():
    form = BasketForm()
    if not form.validate_on_submit():
        abort(400, description="give a work id")
    if not catalogue.entries(engine(), [form.work_id.data]):
        abort(404, description="no such work in the catalogue")
    ids = _basket()
    if len(ids) >= MAX_BASKET and form.work_id.data not in ids:
        flash(f"A basket holds at most {MAX_BASKET} works: buy these first.", "error")
    else:
        _save_basket([*ids, form.work_id.data])
        if form.kind.data in ("METERED", "FLAT"):
            session["basket_kind"] = form.kind.data
        flash(f"Work {form.work_id.data} is in your basket.", "success")
    return redirect(url_for("licensee.basket"))


@bp.post("/basket/<int:work_id>/remove")
@role_required("licensee")
def basket_remove(work_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    _save_basket([w for w in _basket() if w != work_id])
    return redirect(url_for("licensee.basket"))


def _check_checkout(form: CheckoutForm, items: list[catalogue.CatalogueEntry]) -> dict | None:
    """The purchase's parameters, or None with errors on the form's fields."""
    kind = form.kind.data
    ok = True
    if not items:
        form.kind.errors.append("your basket is empty: add works from the catalogue")
        return None
    missing = [e for e in items if not (e.terms.get(kind) and e.terms[kind].offered)]
    if missing:
        names = ", ".join(f"{e.work_id} ({e.title or 'untitled'})" for e in missing)
        form.kind.errors.append(f"not offered as {kind}: {names}; remove them or choose the other license")
        return None
    terms = [e.terms[kind] for e in items]
    max_fee = None
    try:
        max_fee = parse_usd(form.max_fee.data or "")
    except ValueError as exc:
        form.max_fee.errors.append(str(exc))
        ok = False
    max_rate = 0
    if kind == "METERED":
        try:
            max_rate = parse_usd(form.max_rate.data or "")
        except ValueError as exc:
            form.max_rate.errors.append(str(exc))
            ok = False
        if max_rate > MAX_RATE:
            form.max_rate.errors.append(f"rates are at most {usd(MAX_RATE)} a play")
            ok = False
    min_expiry = 0
    if form.min_expiry.data:
        try:
            day = datetime.strptime(form.min_expiry.data, "%Y-%m-%d")
            min_expiry = calendar.timegm(day.timetuple())
        except ValueError:
            form.min_expiry.errors.append("a date as YYYY-MM-DD")
            ok = False
    if not ok:
        return None
    total = sum(t.fee for t in terms)
    if max_fee is not None and total > max_fee:
        form.max_fee.errors.append(f"the fees add up to {usd(total)} now, above your maximum of {usd(max_fee)}")
        ok = False
    top_rate = max(t.rate_per_play for t in terms)
    if kind == "METERED" and top_rate > max_rate:
        form.max_rate.errors.append(f"a work charges {usd(top_rate)} a play now, above your maximum of {usd(max_rate)}")
        ok = False
    if min_expiry:
        now = _now()
        short = [
            (e, max(catalogue.held_expiry(engine(), g.user.address, e.work_id, LicenseKind[kind]), now) + t.duration)
            for e, t in zip(items, terms, strict=True)
        ]
        short = [(e, end) for e, end in short if end < min_expiry]
        if short:
            e, end = short[0]
            form.min_expiry.errors.append(
                f"work {e.work_id} ({e.title or 'untitled'}) would run until {_date(end)}, before your minimum expiry"
            )
            ok = False
    live = _live(g.user.address) if ok and total else None
    if live is not None and live["token"] < total:
        form.max_fee.errors.append(
            f"your token balance is {usd(live['token'])}, less than the fees of {usd(total)}: fees are paid from it"
        )
        ok = False
    if not ok:
        return None
    return {
        "work_ids": [e.work_id for e in items],
        "kind": int(LicenseKind[kind]),
        "max_total_fee": max_fee,
        "max_rate": max_rate,
        "min_expiry": min_expiry,
    }


@bp.route("/basket", methods=["GET", "POST"])
@role_required("licensee")
def basket():
    items = catalogue.entries(engine(), _basket())
    kind = session.get("basket_kind", "METERED")
    offered = [e.terms[kind] for e in items if e.terms.get(kind) and e.terms[kind].offered]
    form = CheckoutForm(
        data={
            "kind": kind,
            "max_fee": usd(sum(t.fee for t in offered)).lstrip("$").replace(",", ""),
            "max_rate": usd(max((t.rate_per_play for t in offered), default=0)).lstrip("$").replace(",", ""),
        }
    )
    if form.validate_on_submit():
        session["basket_kind"] = form.kind.data
        params = _check_checkout(form, items)
        if params is not None:
            action = gasless.queue_action(engine(), g.user.id, "buy_licenses", params)
            _run(action)
            done = gasless.get_action(engine(), action.id)
            if done is not None and done.status != "failed":
                _save_basket([])
                return redirect(url_for("licensee.licenses"))
            return redirect(url_for("licensee.basket"))
    return render_template(
        "licensee/basket.html", form=form, items=items, remove_form=ActionForm(), live=_live(g.user.address)
    ), 400 if form.errors else 200


# ----------------------------------------------------------------------------- licenses held


@bp.get("/licenses")
@role_required("licensee")
def licenses():
    held = catalogue.licenses_of(engine(), g.user.address)
    pending = [
        a
        for a in gasless.actions_of(engine(), g.user.id, statuses=(*views.PENDING, "awaiting_permit"))
        if a.kind == "buy_licenses"
    ]
    return render_template("licensee/licenses.html", held=held, now=_now(), pending=pending, add_form=BasketForm())


# ----------------------------------------------------------------------------- escrow


@bp.get("/escrow")
@role_required("licensee")
def escrow():
    return _escrow_page()


def _escrow_page(status: int = 200, **forms):
    user = g.user
    summary = catalogue.escrow(engine(), user.address)
    live = _live(user.address)
    balance = live["escrow"] if live else summary.balance
    held = catalogue.licenses_of(engine(), user.address)
    metered_active = any(h.kind == "METERED" and h.active() for h in held)
    devnet = not portal_settings().production and bool(live and live["test_token"])
    return render_template(
        "licensee/escrow.html",
        summary=summary,
        live=live,
        balance=balance,
        covers=summary.covers_recent_rate(balance),
        days_left=summary.days_left(balance),
        metered_active=metered_active,
        movements=catalogue.escrow_movements(engine(), user.address),
        topup_form=forms.get("topup") or AmountForm(prefix="topup"),
        request_form=forms.get("request") or AmountForm(prefix="request"),
        complete_form=forms.get("complete")
        or CompleteWithdrawalForm(
            prefix="complete",
            data={
                "amount": usd(live["request_amount"]).lstrip("$").replace(",", "") if live else "",
                "to": user.payout_address or user.address,
            },
        ),
        mint_form=forms.get("mint") or MintForm(prefix="mint"),
        cancel_form=ActionForm(prefix="cancel"),
        devnet=devnet,
        notice_days=(live["notice"] // 86_400) if live else 7,
        pending=[
            a
            for a in gasless.actions_of(engine(), user.id, statuses=(*views.PENDING, "awaiting_permit"))
            if a.kind in gasless.LICENSEE_ACTIONS and a.kind != "buy_licenses"
        ],
        spent=gasless.gas_spent(engine(), user.id),
        budget=portal_settings().gas_budget,
    ), status


def _queue_and_run(kind: str, params: dict):
    """Queues a licensee action and runs it (a refusal or a wallet's permit to sign is flashed),
    then shows the escrow page again."""
    _run(gasless.queue_action(engine(), g.user.id, kind, params))
    return redirect(url_for("licensee.escrow"))


#: Checks an escrow form's amount (None when it did not parse) against the chain's figures (None
#: when the chain is not reachable): the action's params, or None with errors put on the form.
EscrowCheck = Callable[[Any, int | None, dict | None], dict | None]


def _escrow_post(form, name: str, kind: str, check: EscrowCheck):
    """The escrow forms' shape: a valid form that passes ``check`` is queued and run; otherwise
    the escrow page shows the form (as ``name``) with its errors, 400."""
    if form.validate_on_submit():
        params = check(form, _parse_amount(form.amount), _live(g.user.address))
        if params is not None:
            return _queue_and_run(kind, params)
    return _escrow_page(400, **{name: form})


def _check_top_up(form: AmountForm, amount: int | None, live: dict | None) -> dict | None:
    if amount is not None and live is not None and live["token"] < amount:
        form.amount.errors.append(f"your token balance is {usd(live['token'])}: top up at most that")
        return None
    return None if amount is None else {"amount": amount}


def _check_request(form: AmountForm, amount: int | None, live: dict | None) -> dict | None:
    available = live["escrow"] if live else catalogue.escrow(engine(), g.user.address).balance
    if amount is not None and amount > available:
        form.amount.errors.append(f"your escrow holds {usd(available)}: request at most that")
        return None
    return None if amount is None else {"amount": amount}


def _check_withdrawal(form: CompleteWithdrawalForm, amount: int | None, live: dict | None) -> dict | None:
    if not is_address(form.to.data) or to_checksum_address(form.to.data) == ZERO:
        form.to.errors.append("not an Ethereum address (0x and 40 hex digits, not zero)")
    elif amount is not None and live is not None and amount > live["request_amount"]:
        form.amount.errors.append(
            f"you asked to withdraw {usd(live['request_amount'])}: request a withdrawal first, "
            f"then wait the {live['notice'] // 86_400}-day notice"
        )
    elif amount is not None and live is not None and live["now"] < live["available_at"]:
        form.amount.errors.append(f"the notice period runs until {_date(live['available_at'])}")
    elif amount is not None:
        return {"amount": amount, "to": to_checksum_address(form.to.data)}
    return None


@bp.post("/escrow/top-up")
@role_required("licensee")
def top_up():
    return _escrow_post(AmountForm(prefix="topup"), "topup", "deposit_with_permit", _check_top_up)


@bp.post("/escrow/request-withdrawal")
@role_required("licensee")
def request_withdrawal():
    return _escrow_post(AmountForm(prefix="request"), "request", "request_escrow_withdrawal", _check_request)


@bp.post("/escrow/cancel-withdrawal")
@role_required("licensee")
def cancel_withdrawal():
    if not ActionForm(prefix="cancel").validate_on_submit():
        abort(400)
    return _queue_and_run("request_escrow_withdrawal", {"amount": 0})


@bp.post("/escrow/withdraw")
@role_required("licensee")
def complete_withdrawal():
    return _escrow_post(CompleteWithdrawalForm(prefix="complete"), "complete", "withdraw_escrow", _check_withdrawal)


@bp.post("/escrow/mint")
@role_required("licensee")
def mint():
    """Devnet only: the relayer asks TestStablecoin's open faucet for tokens for the licensee."""
    if portal_settings().production:
        abort(404)
    form = MintForm(prefix="mint")
    if not form.validate_on_submit():
        return _escrow_page(400, mint=form)
    chain = _chain()
    if chain is None:
        flash("The chain is not reachable: no tokens minted.", "error")
        return redirect(url_for("licensee.escrow"))
    amount = form.amount.data * UNIT
    try:
        result = chain.mint_test_tokens(g.user.id, g.user.address, amount)
    except LedgerError as exc:
        flash(f"Not minted: {exc}", "error")
        return redirect(url_for("licensee.escrow"))
    gasless.record_relayer_tx(engine(), g.user.id, "mint_test_tokens", {"amount": amount}, result)
    flash(f"Minted {usd(amount)} of test tokens to {g.user.address}.", "success")
    return redirect(url_for("licensee.escrow"))


# ----------------------------------------------------------------------------- actions (and wallet signatures)


@bp.get("/actions")
@role_required("licensee")
def actions():
    mine = [
        a
        for a in gasless.actions_of(engine(), g.user.id)
        if a.kind in gasless.LICENSEE_ACTIONS or a.kind in gasless.RELAYER_TRANSACTIONS
    ]
    return render_template(
        "licensee/actions.html",
        actions=mine,
        spent=gasless.gas_spent(engine(), g.user.id),
        budget=portal_settings().gas_budget,
    )


def _own_action(action_id: int):
    return signing.own_action(action_id, gasless.LICENSEE_ACTIONS)


@bp.get("/actions/<int:action_id>/permit")
@role_required("licensee")
def permit_typed_data(action_id: int):
    """The ERC-2612 Permit a wallet signs (eth_signTypedData_v4) before its request."""
    action = _own_action(action_id)
    if action.status != "awaiting_permit":
        abort(409, description="this action is not waiting for a permit")
    chain = _chain()
    if chain is None:
        abort(503, description="the chain is not reachable")
    typed = chain.permit_typed_data(g.user.address, gasless.permit_value(action))
    session[f"permit-{action.id}"] = typed
    return jsonify(typed)


@bp.post("/actions/<int:action_id>/permit")
@role_required("licensee")
def permit_signature(action_id: int):
    action = _own_action(action_id)
    sig = signing.read_signature()
    if sig is None:
        return signing.bad_signature()
    typed = session.pop(f"permit-{action.id}", None)
    if typed is None:
        return signing.error("refused", "fetch the permit to sign first", 400)
    try:
        ready = gasless.accept_permit_signature(engine(), action, g.user, typed, sig)
        done = relayer().run(ready, g.user, portal_settings().secret_key)
    except RelayerUnavailable as exc:
        return signing.error("unavailable", str(exc), 503)
    except LedgerError as exc:
        return signing.error("refused", str(exc), 400)
    return jsonify(status=done.status)


@bp.get("/actions/<int:action_id>/typed-data")
@role_required("licensee")
def typed_data(action_id: int):
    """The EIP-712 ForwardRequest a wallet signs (eth_signTypedData_v4)."""
    return signing.typed_data_response(_own_action(action_id))


@bp.post("/actions/<int:action_id>/signature")
@role_required("licensee")
def signature(action_id: int):
    return signing.submit_signature(_own_action(action_id))
