"""Accounts in the browser: sign up, log in and out, profile, password, Sign-In with Ethereum;
CSRF on every form, cookies, security headers, rate limits, secrets never logged."""

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from portal_support import PASSWORD, SECRET, Portal, csrf_of, make_app

from ledger import accounts


def signup(portal, username="newbie", password=PASSWORD, roles=("artist",), **extra):
    token = csrf_of(portal.get("/signup").data)
    return portal.client.post(
        "/signup",
        data={
            "username": username,
            "password": password,
            "confirm": password,
            "roles": list(roles),
            "csrf_token": token,
            **extra,
        },
    )


def test_signup_makes_an_account_with_a_custodial_key(app, engine):
    portal = Portal(app)
    response = signup(portal, roles=("artist", "label"), payout_address="0x" + "ab" * 20)
    assert response.status_code == 302 and response.headers["Location"] == "/artist/"
    user = accounts.find_user(engine, "newbie")
    assert user.role_set == {"artist", "label"} and not user.wallet
    assert PASSWORD not in user.password_hash and user.password_hash.startswith("scrypt:")
    assert accounts.custodial_account(user, SECRET).address == user.address
    assert b"Welcome, newbie" in portal.get("/artist/").data


@pytest.mark.parametrize(
    "data, message",
    [
        ({"username": "x"}, b"Field must be between 3 and 32"),
        ({"password": "short", "confirm": "short"}, b"Field must be between 10 and 256"),
        ({"confirm": "something else entirely"}, b"the passwords differ"),
        ({"roles": []}, b"choose at least one role"),
        ({"roles": ["admin"]}, b"is not a valid choice"),
        ({"username": "Bad Name!"}, b"lower-case letters"),
        ({"payout_address": "0x" + "zz" * 20}, b"is not an Ethereum address"),
    ],
)
def test_signup_validation_errors_are_shown(app, data, message):
    portal = Portal(app)
    fields = {
        "username": "newbie",
        "password": PASSWORD,
        "confirm": PASSWORD,
        "roles": ["artist"],
        "csrf_token": csrf_of(portal.get("/signup").data),
    }
    fields.update(data)
    response = portal.client.post("/signup", data=fields)
    assert response.status_code == 400
    assert message in response.data


def test_signup_refuses_a_taken_username(app, users):
    response = signup(Portal(app), username="alice")
    assert response.status_code == 400 and b"that username is taken" in response.data


def test_login_and_logout(app, users):
    portal = Portal(app)
    response = portal.login("alice")
    assert response.status_code == 302 and response.headers["Location"] == "/artist/"
    assert portal.get("/artist/").status_code == 200
    token = csrf_of(portal.get("/artist/").data)
    assert portal.client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert portal.get("/artist/").status_code == 302


@pytest.mark.parametrize("username, password", [("alice", "wrong password!"), ("nobody", PASSWORD)])
def test_login_refuses_wrong_credentials_alike(app, users, username, password):
    response = Portal(app).login(username, password)
    assert response.status_code == 400 and b"wrong username or password" in response.data


def test_login_redirects_only_to_local_pages(app, users):
    portal = Portal(app)
    token = csrf_of(portal.get("/login").data)
    ok = portal.client.post(
        "/login?next=/artist/balance", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert ok.headers["Location"] == "/artist/balance"
    for evil in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        portal = Portal(app)
        token = csrf_of(portal.get("/login").data)
        response = portal.client.post(
            f"/login?next={evil}", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
        )
        assert response.headers["Location"] == "/artist/"


def test_login_starts_a_new_session(app, users):
    portal = Portal(app)
    with portal.client.session_transaction() as s:
        s["planted"] = "by an attacker"
    portal.login("alice")
    with portal.client.session_transaction() as s:
        assert "planted" not in s and "uid" in s


def test_pages_need_a_login(client):
    for path in ("/artist/", "/artist/works/new", "/artist/balance", "/label/", "/label/tokens", "/account"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_account_page_changes_roles_and_payout(as_user, engine, users):
    alice = as_user("alice")
    response = alice.post_form("/account", {"roles": ["artist", "label"], "payout_address": "0x" + "cd" * 20})
    assert response.status_code == 302
    user = accounts.find_user(engine, "alice")
    assert user.role_set == {"artist", "label"} and user.payout_address.lower() == "0x" + "cd" * 20
    assert alice.get("/label/").status_code == 200


def test_password_change_needs_the_current_password(as_user, app, users):
    alice = as_user("alice")
    token = csrf_of(alice.get("/account").data)
    bad = alice.client.post(
        "/account/password",
        data={
            "pw-current": "not it at all",
            "pw-new": "a new password!",
            "pw-confirm": "a new password!",
            "csrf_token": token,
        },
    )
    assert bad.status_code == 400 and b"the current password is wrong" in bad.data
    good = alice.client.post(
        "/account/password",
        data={
            "pw-current": PASSWORD,
            "pw-new": "a new password!",
            "pw-confirm": "a new password!",
            "csrf_token": token,
        },
    )
    assert good.status_code == 302
    assert Portal(app).login("alice").status_code == 400
    assert Portal(app).login("alice", "a new password!").status_code == 302


# ----------------------------------------------------------------------------- CSRF

FORMS = [
    ("/signup", None),
    ("/login", None),
    ("/logout", "alice"),
    ("/account", "alice"),
    ("/account/password", "alice"),
    ("/artist/works/new", "alice"),
    ("/artist/balance", "alice"),
    ("/artist/works/1/distribute", "alice"),
    ("/label/tokens", "label"),
    ("/label/tokens/1/revoke", "label"),
    ("/auth/siwe", None),
]


@pytest.mark.parametrize("path, who", FORMS)
def test_every_form_refuses_a_post_without_csrf_token(app, users, seeded, as_user, path, who):
    portal = as_user(who) if who else Portal(app)
    response = portal.client.post(path, data={"username": "alice", "password": PASSWORD, "title": "x"})
    assert response.status_code == 400
    assert b"not sent by this site" in response.data or b"csrf" in response.data.lower()


def test_a_forged_csrf_token_is_refused(app, users):
    portal = Portal(app)
    portal.get("/login")
    response = portal.client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": "forged.token.value"}
    )
    assert response.status_code == 400 and b"not sent by this site" in response.data


# ----------------------------------------------------------------------------- headers and cookies


def test_session_cookie_is_secure_httponly_samesite(app, users):
    response = Portal(app).login("alice")
    cookie = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("ledger_session=")][0]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize("path", ["/", "/login", "/api/v1/health", "/nope"])
def test_security_headers_and_a_csp_without_inline_script(client, path):
    h = client.get(path).headers
    csp = h["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert h["X-Content-Type-Options"] == "nosniff" and h["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_script_or_style(as_user, seeded):
    alice = as_user("alice")
    for path in ("/", "/artist/", "/artist/works/new", "/artist/works/1", "/artist/balance", "/account"):
        html = alice.get(path).data.decode()
        for script in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
            attrs, body = script
            assert "src=" in attrs or 'type="application/json"' in attrs, (path, attrs)
        assert " style=" not in html and "<style" not in html and " onclick=" not in html, path


def test_hsts_in_production_only(engine):
    assert "Strict-Transport-Security" not in make_app(engine).test_client().get("/").headers
    prod = make_app(engine, env="production").test_client().get("/").headers
    assert prod["Strict-Transport-Security"].startswith("max-age=")


def test_vendor_assets_are_served_locally(client):
    for name, kind in (("pico.min.css", "text/css"), ("chart.umd.js", "text/javascript")):
        response = client.get(f"/vendor/{name}")
        assert response.status_code == 200 and response.mimetype == kind and len(response.data) > 10_000
    assert client.get("/vendor/..%2Fpackage.json").status_code == 404
    assert client.get("/vendor/package.json").status_code == 404


# ----------------------------------------------------------------------------- rate limits


def test_login_is_rate_limited(engine, users):
    app = make_app(engine, rate_login="3 per minute")
    portal = Portal(app)
    codes = [portal.login("alice", "wrong password!").status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]


def test_signup_is_rate_limited(engine):
    portal = Portal(make_app(engine, rate_signup="2 per hour"))
    assert [signup(portal, username=f"user{i}").status_code for i in range(3)] == [302, 302, 429]


# ----------------------------------------------------------------------------- secrets never logged


def test_passwords_tokens_and_keys_are_never_logged(app, engine, caplog):
    caplog.set_level(logging.DEBUG)
    portal = Portal(app)
    signup(portal, username="secretive", roles=("label",))
    token = csrf_of(portal.get("/label/tokens").data)
    created = portal.client.post("/label/tokens", data={"name": "ci", "csrf_token": token})
    secret = re.search(rb'id="new-token">([^<]+)<', created.data).group(1).decode()
    portal.client.get("/api/v1/works", headers={"Authorization": f"Bearer {secret}"})
    Portal(app).login("secretive", "wrong password!")
    user = accounts.find_user(engine, "secretive")
    key_hex = bytes(accounts.custodial_account(user, SECRET).key).hex()
    logged = caplog.text + repr(user)
    for s in (PASSWORD, "wrong password!", secret, key_hex, SECRET):
        assert s not in logged


# ----------------------------------------------------------------------------- Sign-In with Ethereum


def siwe_message(nonce, address, domain="localhost", minutes=10):
    from siwe import SiweMessage

    now = datetime.now(UTC).replace(microsecond=0)
    return SiweMessage(
        domain=domain,
        address=address,
        uri="http://localhost",
        version="1",
        chain_id=31337,
        nonce=nonce,
        statement="Sign in to the royalty ledger portal.",
        issued_at=now.isoformat().replace("+00:00", "Z"),
        expiration_time=(now + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
    ).prepare_message()


def siwe_post(portal, message, signature):
    token = csrf_of(portal.get("/login").data)
    return portal.client.post(
        "/auth/siwe", json={"message": message, "signature": signature}, headers={"X-CSRFToken": token}
    )


def test_siwe_signs_a_wallet_in_and_makes_its_account(app, engine):
    wallet = Account.create()
    portal = Portal(app)
    prepared = portal.get(f"/auth/siwe/nonce?address={wallet.address.lower()}&chainId=31337").get_json()
    signature = "0x" + wallet.sign_message(encode_defunct(text=prepared["message"])).signature.hex().removeprefix("0x")
    response = siwe_post(portal, prepared["message"], signature)
    assert response.status_code == 200 and response.get_json()["redirect"] == "/artist/"
    user = accounts.find_user(engine, wallet.address.lower())
    assert user.wallet and user.address == wallet.address and user.encrypted_key is None
    assert portal.get("/artist/").status_code == 200


def _signed(wallet, message):
    return "0x" + wallet.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


def test_siwe_refuses_another_signer(app):
    wallet, thief = Account.create(), Account.create()
    portal = Portal(app)
    nonce = portal.get("/auth/siwe/nonce").get_json()["nonce"]
    message = siwe_message(nonce, wallet.address)
    response = siwe_post(portal, message, _signed(thief, message))
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "siwe_failed"


def test_siwe_refuses_a_replayed_nonce(app):
    wallet = Account.create()
    portal = Portal(app)
    nonce = portal.get("/auth/siwe/nonce").get_json()["nonce"]
    message = siwe_message(nonce, wallet.address)
    assert siwe_post(portal, message, _signed(wallet, message)).status_code == 200
    assert siwe_post(portal, message, _signed(wallet, message)).status_code == 400


@pytest.mark.parametrize(
    "domain, nonce_ok, minutes", [("evil.example", True, 10), ("localhost", False, 10), ("localhost", True, -1)]
)
def test_siwe_refuses_wrong_domain_nonce_or_expired(app, domain, nonce_ok, minutes):
    wallet = Account.create()
    portal = Portal(app)
    nonce = portal.get("/auth/siwe/nonce").get_json()["nonce"]
    message = siwe_message(nonce if nonce_ok else "abcdefgh12345", wallet.address, domain, minutes)
    assert siwe_post(portal, message, _signed(wallet, message)).status_code == 401


@pytest.mark.parametrize("body", [{"message": "hello", "signature": "0x00"}, {"message": 1}, None])
def test_siwe_refuses_malformed_messages(app, body):
    portal = Portal(app)
    portal.get("/auth/siwe/nonce")
    token = csrf_of(portal.get("/login").data)
    response = portal.client.post("/auth/siwe", json=body, headers={"X-CSRFToken": token})
    assert response.status_code == 400 and "error" in response.get_json()
