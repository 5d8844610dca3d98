"""Fixtures of the portal tests: the real app on a migrated database per test (SQLite file and
PostgreSQL), users of each role, and the index seeded as the indexer writes it.

Run: ``pytest -p no:pytest-brownie -p no:cacheprovider tests/webapp``.
"""

from __future__ import annotations

import pytest
from portal_support import PASSWORD, SECRET, Portal, make_app

from ledger import accounts
from tests.support import migrated_engine, migrated_sqlite_file, postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Migrated to head when the test uses ``engine`` (a copy of the session's template), else empty."""
    migrated = "engine" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "portal.sqlite3"
        yield migrated_sqlite_file(path) if migrated else f"sqlite:///{path}"
    else:
        with postgres_database("portal_test", migrated=migrated) as url:
            yield url


@pytest.fixture
def engine(db_url):
    with migrated_engine(db_url, upgrade_schema=False) as eng:
        yield eng


@pytest.fixture
def app(engine):
    return make_app(engine)


@pytest.fixture
def client(app):
    return app.test_client()


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
    monkeypatch.setattr(
        accounts,
        "generate_password_hash",
        lambda password, method: password_hash if password == PASSWORD else real(password, method),
    )
    made = {}
    for name, roles in [
        ("alice", ["artist"]),
        ("label", ["label"]),
        ("bob", ["artist"]),
        ("lic", ["licensee"]),
        ("multi", ["artist", "label"]),
    ]:
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
