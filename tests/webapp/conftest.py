"""Fixtures of the portal tests: the real app on a migrated database per test (SQLite file and
PostgreSQL), users of each role, and the index seeded as the indexer writes it.

Run: ``pytest -p no:pytest-brownie -p no:cacheprovider tests/webapp``.
"""
from __future__ import annotations

import re

import pytest

from ledger import accounts
from ledger.config import Settings
from tests.support import migrated_engine, postgres_database
from webapp import create_app
from webapp.settings import PortalSettings

PASSWORD = "correct horse battery"
SECRET = "test-secret-" + "x" * 40


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    else:
        with postgres_database("portal_test") as url:
            yield url


@pytest.fixture
def engine(db_url):
    with migrated_engine(db_url) as eng:
        yield eng


def make_app(engine, **portal):
    settings = Settings.from_env().with_(rpc_url="http://127.0.0.1:9", database_url=str(engine.url))
    defaults = dict(secret_key=SECRET, rate_login="1000 per minute", rate_signup="1000 per minute",
                    rate_token="1000 per minute")
    defaults.update(portal)
    return create_app({"TESTING": True, "LEDGER_SETTINGS": settings, "LEDGER_ENGINE": engine,
                       "PORTAL_SETTINGS": PortalSettings(**defaults)})


@pytest.fixture
def app(engine):
    return make_app(engine)


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_of(html: bytes | str) -> str:
    text = html.decode() if isinstance(html, bytes) else html
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', text) or \
        re.search(r'name="csrf-token" content="([^"]+)"', text)
    assert m, "no CSRF token on the page"
    return m.group(1)


class Portal:
    """Drives the portal like a browser: reads each form's CSRF token before posting it."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def post_form(self, path, data, form_page=None):
        token = csrf_of(self.client.get(form_page or path).data)
        return self.client.post(path, data={**data, "csrf_token": token})

    def login(self, username, password=PASSWORD):
        return self.post_form("/login", {"username": username, "password": password})


@pytest.fixture(scope="session")
def password_hash():
    from werkzeug.security import generate_password_hash

    return generate_password_hash(PASSWORD, method="scrypt")


@pytest.fixture
def users(engine, password_hash, monkeypatch):
    """alice (artist), label (label), bob (artist), lic (licensee), multi (artist and label).

    Their password hash is one real scrypt hash made once per session (scrypt is slow on
    purpose); sign-up tests hash for real."""
    real = accounts.generate_password_hash
    monkeypatch.setattr(accounts, "generate_password_hash",
                        lambda password, method: password_hash if password == PASSWORD else real(password, method))
    made = {}
    for name, roles in [("alice", ["artist"]), ("label", ["label"]), ("bob", ["artist"]), ("lic", ["licensee"]),
                        ("multi", ["artist", "label"])]:
        made[name] = accounts.create_user(engine, name, PASSWORD, roles, SECRET)
    monkeypatch.setattr(accounts, "generate_password_hash", real)
    return made


@pytest.fixture
def seeded(engine, users):
    from portal_seed import seed

    return seed(engine, users["alice"].address, users["label"].address, users["bob"].address)


@pytest.fixture
def as_user(app, users):
    """as_user("alice") -> a Portal logged in as alice."""
    def make(name):
        portal = Portal(app)
        response = portal.login(name)
        assert response.status_code == 302, response.data[:500]
        return portal
    return make
