"""Alembic environment of the ledger index.

The database comes from, in order: an engine handed over by ``ledger.db`` (``config.attributes
["engine"]``), the ``sqlalchemy.url`` option set by code, or ``LEDGER_DATABASE_URL`` (with the
same default as the ledger: a SQLite file under var/). ``alembic.ini`` at the repository root
only points here.
"""

from __future__ import annotations

import importlib

from alembic import context

from ledger.config import Settings
from ledger.db import make_engine
from ledger.models import Base

# Off-chain tables of other modules share Base; import them so autogenerate sees every table.
for _module in ("ledger.pending", "ledger.accounts", "ledger.gasless", "ledger.devices"):
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError:
        pass

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    return url or Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("engine")
    owned = given is None
    engine = make_engine(_url()) if given is None else given
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
