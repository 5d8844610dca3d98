"""Engines, sessions and schema migrations (Alembic, scripts in ledger/migrations)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .errors import DatabaseError, UserError
from .revisions import MIGRATIONS_DIR, head_revision

if TYPE_CHECKING:
    from alembic.config import Config


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before ingest answers 202 (NORMAL in WAL mode can lose the
    # last commits on power loss).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a LEDGER_DATABASE_URL. SQLite files get their folder created and WAL mode."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"LEDGER_DATABASE_URL is not a database URL: {url!r}") from None
    if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        engine = create_engine(parsed, pool_pre_ping=True, **kwargs)
    except ModuleNotFoundError as exc:
        raise UserError(f"no database driver for {parsed.drivername}: {exc}") from None
    # executemany of an INSERT (the indexer's event rows and upserts): multi-row VALUES pages of
    # 1,000 rows (SQLAlchemy's insertmanyvalues) instead of psycopg's one statement per row in a
    # pipeline, which made the indexer's writes a statement per row (docs/bench/ingest-profile.md)
    engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


def check_connection(engine: Engine) -> None:
    """Raises DatabaseError with a readable message when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot reach the database {engine.url.render_as_string(hide_password=True)}: "
            f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}"
        ) from None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits at the end, rolls back on error."""
    with session_factory(engine).begin() as session:
        yield session


# ----------------------------------------------------------------------------- migrations


def alembic_config(engine_or_url: Engine | str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if isinstance(engine_or_url, str):
        cfg.set_main_option("sqlalchemy.url", engine_or_url.replace("%", "%%"))
    else:
        cfg.attributes["engine"] = engine_or_url
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    check_connection(engine)
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    check_connection(engine)
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision in ``alembic_version`` (None: not migrated). Read with one SELECT, not through
    Alembic, whose import costs every command that reads the index a noticeable part of its start-up."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        versions: list[str] = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(versions) > 1:
        raise DatabaseError(f"the database has several schema heads {versions}; ledger/migrations has one")
    return versions[0] if versions else None


def require_schema(engine: Engine) -> None:
    """Raises DatabaseError unless the database is migrated to the head revision."""
    check_connection(engine)
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise DatabaseError(f"the database schema is at {current or 'nothing'}, not {head}: run `ledger db upgrade`")


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())
