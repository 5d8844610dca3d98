"""Fixtures every pytest suite shares (the brownie suite in tests/contracts has its own).

Databases: ``db_url`` is an empty database, ``engine`` the same migrated to head, each on SQLite
and on PostgreSQL (a database created and dropped per test); ``sqlite_engine`` is SQLite only.
Paths, Anvil and PostgreSQL helpers live in :mod:`tests.support`.
"""

from __future__ import annotations

import pytest

from tests.support import load_device_script, migrated_engine, migrated_sqlite_file, postgres_database, sqlite_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A database: a SQLite file, or a PostgreSQL database created and dropped for the test. Empty,
    unless the test also uses ``engine``: then already migrated to head (a copy of a template
    migrated once per session)."""
    migrated = "engine" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        yield migrated_sqlite_file(path) if migrated else sqlite_url(tmp_path)
        return
    with postgres_database(migrated=migrated) as url:
        yield url


@pytest.fixture
def engine(db_url):
    """An engine on a database migrated to head (SQLite and PostgreSQL)."""
    with migrated_engine(db_url, upgrade_schema=False) as eng:
        yield eng


@pytest.fixture
def sqlite_engine(tmp_path):
    """A migrated SQLite database, for tests where the backend does not matter."""
    with migrated_engine(migrated_sqlite_file(tmp_path / "ledger.sqlite3"), upgrade_schema=False) as eng:
        yield eng


@pytest.fixture(scope="session")
def device_module():
    """scripts/device.py loaded as a module."""
    return load_device_script()
