"""Accounts: sign up, log in (password or Sign-In with Ethereum), log out, profile, password."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, jsonify, redirect, render_template, request, session, url_for

from ledger import accounts

from .forms import LoginForm, PasswordForm, ProfileForm, SignupForm
from .runtime import engine, portal_settings

bp = Blueprint("auth", __name__)
SIWE_STATEMENT = "Sign in to the royalty ledger portal."


def load_user() -> None:
    """Puts the signed-in user on g (session cookie); the API resolves tokens itself."""
    g.user = None
    uid = session.get("uid")
    if uid is not None:
        user = accounts.get_user(engine(), uid)
        if user is None:
            session.clear()
        g.user = user


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user is None:
            return redirect(url_for("auth.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


def role_required(role: str):
    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if g.user is None:
                return redirect(url_for("auth.login", next=request.path))
            if not g.user.has_role(role):
                abort(403, description=f"this page is for accounts with the {role} role (add it on your account page)")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _start_session(user) -> None:
    session.clear()  # a new session on every log-in: no fixation
    session["uid"] = user.id
    session.permanent = True


def _home(user) -> str:
    if user.has_role("artist"):
        return url_for("artist.works")
    if user.has_role("label"):
        return url_for("label.dashboard")
    if user.has_role("licensee"):
        return url_for("licensee.catalogue_page")
    return url_for("auth.account")


def _safe_next(default: str) -> str:
    target = request.args.get("next") or ""
    parts = urlsplit(target)
    if target.startswith("/") and not target.startswith("//") and not parts.netloc and "\\" not in target:
        return target
    return default


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    form = SignupForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(
                engine(),
                form.username.data,
                form.password.data,
                form.roles.data,
                portal_settings().secret_key,
                form.payout_address.data,
            )
        except accounts.UserError as exc:
            form.username.errors.append(str(exc))
        else:
            _start_session(user)
            flash(
                f"Welcome, {user.username}. Your account address is {user.address}; "
                "the portal pays the gas of your on-chain actions.",
                "success",
            )
            return redirect(_home(user))
    return render_template("auth/signup.html", form=form), 400 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(engine(), form.username.data, form.password.data)
        if user is None:
            form.password.errors.append("wrong username or password")
        else:
            _start_session(user)
            flash("You are logged in.", "success")
            return redirect(_safe_next(_home(user)))
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.post("/logout")
def logout():
    from .forms import ActionForm

    if not ActionForm().validate_on_submit():  # CSRF checked globally; this keeps the form honest
        abort(400)
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("index"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    user = g.user
    form = ProfileForm(data={"roles": sorted(user.role_set), "payout_address": user.payout_address or ""})
    if form.validate_on_submit():
        try:
            g.user = accounts.update_profile(engine(), user.id, form.roles.data, form.payout_address.data)
        except accounts.UserError as exc:
            form.roles.errors.append(str(exc))
        else:
            flash("Your account is saved.", "success")
            return redirect(url_for("auth.account"))
    return render_template(
        "auth/account.html", form=form, password_form=PasswordForm(prefix="pw")
    ), 400 if form.errors else 200


@bp.post("/account/password")
@login_required
def change_password():
    form = PasswordForm(prefix="pw")
    if form.validate_on_submit():
        try:
            accounts.change_password(engine(), g.user.id, form.current.data, form.new.data)
        except accounts.UserError as exc:
            form.current.errors.append(str(exc))
        else:
            _start_session(g.user)
            flash("Your password is changed.", "success")
            return redirect(url_for("auth.account"))
    user = g.user
    profile = ProfileForm(data={"roles": sorted(user.role_set), "payout_address": user.payout_address or ""})
    return render_template("auth/account.html", form=profile, password_form=form), 400


# ----------------------------------------------------------------------------- Sign-In with Ethereum


@bp.get("/auth/siwe/nonce")
def siwe_nonce():
    """A fresh nonce for this session and, given ?address=&chainId=, the EIP-4361 message to sign
    (built here because the message needs the EIP-55 address, which a wallet may not give)."""
    from eth_utils import is_address, to_checksum_address
    from siwe import SiweMessage, generate_nonce

    session["siwe_nonce"] = nonce = generate_nonce()
    body = {"nonce": nonce, "domain": request.host, "uri": request.host_url.rstrip("/"), "statement": SIWE_STATEMENT}
    address, chain_id = request.args.get("address", ""), request.args.get("chainId", "1")
    if address:
        if not is_address(address) or not chain_id.isdigit():
            return _siwe_error("address must be an Ethereum address and chainId a number")
        issued = datetime.now(UTC).replace(microsecond=0)
        body["message"] = SiweMessage(
            domain=request.host,
            address=to_checksum_address(address),
            uri=body["uri"],
            version="1",
            chain_id=int(chain_id),
            nonce=nonce,
            statement=SIWE_STATEMENT,
            issued_at=issued.isoformat().replace("+00:00", "Z"),
            expiration_time=(issued + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
        ).prepare_message()
    return jsonify(body)


def _siwe_error(message: str, status: int = 400):
    return jsonify(error={"code": "siwe_failed", "message": message}), status


@bp.post("/auth/siwe")
def siwe_verify():
    """EIP-4361: the message must name this host, carry this session's nonce (used once) and be
    signed by its address; the user with that wallet is signed in (and made on first use)."""
    from siwe import SiweMessage, VerificationError

    body = request.get_json(silent=True)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("message"), str)
        or not isinstance(body.get("signature"), str)
        or len(body["message"]) > 4000
    ):
        return _siwe_error("send JSON {message, signature}")
    nonce = session.pop("siwe_nonce", None)
    if nonce is None:
        return _siwe_error("ask for a nonce first (GET /auth/siwe/nonce)")
    try:
        message = SiweMessage.from_message(body["message"])
        message.verify(body["signature"], domain=request.host, nonce=nonce)
    except VerificationError as exc:
        return _siwe_error(f"the message was refused: {type(exc).__name__}", 401)
    except Exception:  # noqa: BLE001 - the parser raises many types on malformed messages
        return _siwe_error("not an EIP-4361 message")
    user = accounts.user_for_wallet(engine(), message.address)
    _start_session(user)
    flash("Signed in with Ethereum.", "success")
    return jsonify(redirect=_home(user))
