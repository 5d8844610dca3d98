"""Alembic owns the schema: upgrade from empty, downgrade to base, upgrade again; models match."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ledger.db import current_revision, downgrade, head_revision, make_engine, require_schema, table_names, upgrade
from ledger.models import Base, INDEXED_TABLES


def test_upgrade_downgrade_upgrade(db_url):
    engine = make_engine(db_url)
    try:
        assert table_names(engine) == []
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        tables = set(table_names(engine))
        assert {t.name for t in INDEXED_TABLES} <= tables
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert table_names(engine) == ["alembic_version"]
        upgrade(engine)
        assert set(table_names(engine)) == tables
        require_schema(engine)
    finally:
        engine.dispose()


def test_migrations_match_the_models(db_url):
    import importlib

    for module in ("ledger.pending", "ledger.accounts", "ledger.gasless", "ledger.devices"):  # tables share Base
        importlib.import_module(module)
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_cli_db_upgrade_and_downgrade(cli_env, capsys):
    from ledger.cli import main

    assert main(["db", "upgrade"]) == 0
    assert head_revision() in capsys.readouterr().out
    assert main(["db", "downgrade", "base"]) == 0
    assert "base" in capsys.readouterr().out
    assert main(["db", "upgrade", "head"]) == 0
    assert main(["db", "current"]) == 0
    assert head_revision() in capsys.readouterr().out


def test_head_revision_is_alembics():
    """ledger.db reads the head from the scripts without Alembic; it must be Alembic's head."""
    from alembic.script import ScriptDirectory

    from ledger.db import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
