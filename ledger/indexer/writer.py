"""The SQL writer: one range's rows into the index tables, in bulk, and the projection state read back.

It owns how rows reach the database: one executemany per table, COPY into ``plays`` on PostgreSQL,
counter deltas and plain updates of keyed rows (works, licensees, devices) grouped into executemany
updates, and upserts of licenses, payees and the per (work, month, territory) summary. No per-row
round trips. It also reads back the projection's :class:`State` from the tables it wrote, so an
indexer resumes where the index stands. The caller owns the transaction; nothing here talks to the node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

from sqlalchemy import Connection, Table, bindparam, insert, select, update

from ..chain import LicenseKind
from ..errors import IndexerError
from ..models import Device, License, Licensee, Payee, SplitShare, Work, WorkPeriodStats
from .projection import KeyedRows, PlayRow, RangeRows, Row, State, table_of

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

PLAY_COLUMNS = (
    "block_number",
    "log_index",
    "batch_index",
    "work_id",
    "device_id",
    "count",
    "licensed",
    "rate",
    "amount",
    "territory",
    "period",
)

WriteRows = Callable[[Connection, Table, list[Row]], None]
WritePlays = Callable[[Connection, list[PlayRow]], None]
UpsertInsert = Union["postgresql.Insert", "sqlite.Insert"]


def load_state(conn: Connection) -> State:
    """The projection's state as the index holds it: latest splits, licensees, METERED licenses, devices, works."""
    state = State()
    s = table_of(SplitShare)
    current: dict[int, tuple[tuple[int, int], list[str], list[int]]] = {}
    for row in conn.execute(
        select(s.c.work_id, s.c.block_number, s.c.log_index, s.c.payee, s.c.bps).order_by(
            s.c.work_id, s.c.block_number, s.c.log_index, s.c.position
        )
    ):
        key = (row.block_number, row.log_index)
        entry = current.get(row.work_id)
        if entry is None or entry[0] != key:
            entry = current[row.work_id] = (key, [], [])
        entry[1].append(row.payee)
        entry[2].append(row.bps)
    state.splits = {w: (p, b) for w, (_, p, b) in current.items()}
    state.licensee_by_index = {i: a for i, a in conn.execute(select(Licensee.licensee_index, Licensee.address))}
    state.index_by_licensee = {a: i for i, a in state.licensee_by_index.items()}
    lic = table_of(License)
    for row in conn.execute(
        select(
            lic.c.licensee,
            lic.c.work_id,
            lic.c.rate_per_play,
            lic.c.expiry,
            lic.c.prev_rate_per_play,
            lic.c.prev_expiry,
        ).where(lic.c.kind == int(LicenseKind.METERED))
    ):
        state.metered[(row.licensee, row.work_id)] = (
            row.rate_per_play,
            row.expiry,
            row.prev_rate_per_play,
            row.prev_expiry,
        )
    state.territory = {d: t for d, t in conn.execute(select(Device.device_id, Device.territory))}
    state.works = set(conn.execute(select(Work.work_id)).scalars())
    return state


def write_range(conn: Connection, batch: RangeRows, write_rows: WriteRows, write_plays: WritePlays) -> None:
    """Writes everything of one range; ``write_rows``/``write_plays`` do the bulk inserts (the facade's hooks)."""
    flush_keyed(conn, batch.works, write_rows)
    flush_keyed(conn, batch.licensees, write_rows)
    flush_keyed(conn, batch.devices, write_rows)
    for table, rows in batch.rows.items():
        write_rows(conn, table, rows)
    if batch.plays:
        write_plays(conn, batch.plays)
    upsert_licenses(conn, batch.licenses)
    upsert_counters(
        conn,
        table_of(WorkPeriodStats),
        ["work_id", "period", "territory"],
        ["plays", "licensed_plays", "play_gross", "fee_gross"],
        [
            {
                "work_id": w,
                "period": p,
                "territory": t,
                "plays": s[0],
                "licensed_plays": s[1],
                "play_gross": s[2],
                "fee_gross": s[3],
            }
            for (w, p, t), s in batch.stats.items()
        ],
    )
    upsert_counters(
        conn,
        table_of(Payee),
        ["address"],
        ["credited", "withdrawn"],
        [{"address": a, "credited": c, "withdrawn": w} for a, (c, w) in batch.payees.items()],
    )


def flush_keyed(conn: Connection, keyed: KeyedRows, write_rows: WriteRows) -> None:
    """New rows in bulk, then counter deltas, then plain updates grouped by the columns they set."""
    t, k = keyed.table, keyed.key
    if keyed.new:
        write_rows(conn, t, list(keyed.new.values()))
    if keyed.deltas and conn.dialect.name == "postgresql":
        # one UPDATE ... FROM unnest(arrays) for all the keys, not one statement per key
        delta_cols = [k, *keyed.counters]
        columns = [list(keyed.deltas), *([d[c] for d in keyed.deltas.values()] for c in keyed.counters)]
        arrays, source = _unnest(conn, t, delta_cols, columns)
        q = conn.dialect.identifier_preparer.quote
        sets = ", ".join(f"{q(c)} = t.{q(c)} + d.{q(c)}" for c in keyed.counters)
        _execute_binary(
            conn,
            f"UPDATE {_table_name(conn, t)} AS t SET {sets} FROM {source} AS d({', '.join(q(c) for c in delta_cols)}) "
            f"WHERE t.{q(k)} = d.{q(k)}",
            arrays,
        )
    elif keyed.deltas:
        stmt = (
            update(t)
            .where(t.c[k] == bindparam("_key"))
            .values({c: t.c[c] + bindparam("_d_" + c) for c in keyed.counters})
        )
        conn.execute(stmt, [{"_key": key, **{"_d_" + c: v for c, v in d.items()}} for key, d in keyed.deltas.items()])
    groups: dict[tuple[str, ...], list[Row]] = {}
    for key, values in keyed.sets.items():
        groups.setdefault(tuple(sorted(values)), []).append({"_key": key, **{"_s_" + c: v for c, v in values.items()}})
    for cols, rows in groups.items():
        stmt = update(t).where(t.c[k] == bindparam("_key")).values({c: bindparam("_s_" + c) for c in cols})
        conn.execute(stmt, rows)


def write_rows(conn: Connection, table: Table, rows: list[Row]) -> None:
    """Bulk insert: COPY on PostgreSQL when the rows allow it (see :func:`copy_rows`), else one
    executemany (multi-row VALUES pages)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_MIN_ROWS and copy_rows(conn, table, rows):
        return
    conn.execute(insert(table), rows)


#: Fewer rows go by executemany: COPY's set-up is not worth it.
COPY_MIN_ROWS = 64


def copy_rows(conn: Connection, table: Table, rows: list[Row]) -> bool:
    """Rows of dicts into ``table`` by COPY (PostgreSQL), as executemany would store them; False
    (nothing written) when they cannot go that way: rows with different keys, or a missing column
    whose default is computed in Python. Scalar Python defaults are filled in; values pass through
    the columns' bind processing (e.g. amounts to NUMERIC) as SQLAlchemy would bind them."""
    names = list(rows[0])
    if any(len(r) != len(names) or r.keys() != rows[0].keys() for r in rows):
        return False
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.name in rows[0]:
            continue
        default = column.default
        if default is None:
            continue  # a server default, a sequence (id) or NULL: COPY leaves it to the server
        if not getattr(default, "is_scalar", False):
            return False
        defaults[column.name] = getattr(default, "arg", None)
    columns = names + list(defaults)
    processors = [table.c[name].type._cached_bind_processor(conn.dialect) for name in columns]
    tail = tuple(defaults.values())
    raw: Any = conn.connection.driver_connection  # a psycopg 3 connection
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    with raw.cursor() as cur:
        with cur.copy(f"COPY {conn.dialect.identifier_preparer.format_table(table)} ({quoted}) FROM STDIN") as copy:
            if any(processors):
                for r in rows:
                    values = [r[n] for n in names] + list(tail)
                    copy.write_row([p(v) if p else v for p, v in zip(processors, values, strict=True)])
            else:
                for r in rows:
                    copy.write_row([r[n] for n in names] + list(tail))
    return True


def write_plays(conn: Connection, rows: list[PlayRow]) -> None:
    """Play rows: COPY on PostgreSQL, executemany elsewhere."""
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.driver_connection  # a psycopg 3 connection
        with raw.cursor() as cur:
            with cur.copy(f"COPY plays ({', '.join(PLAY_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    else:
        marks = ", ".join("?" for _ in PLAY_COLUMNS)
        conn.exec_driver_sql(f"INSERT INTO plays ({', '.join(PLAY_COLUMNS)}) VALUES ({marks})", rows)


def _insert_for(conn: Connection, table: Table) -> UpsertInsert:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise IndexerError(f"unsupported database {conn.dialect.name}: use SQLite or PostgreSQL")


def upsert_counters(conn: Connection, table: Table, keys: list[str], counters: list[str], rows: list[Row]) -> None:
    """Inserts ``rows``, or adds their ``counters`` to the rows already under the same ``keys``."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # one INSERT ... SELECT FROM unnest(arrays) ON CONFLICT for all the rows (executemany of an
        # upsert is one statement per row in psycopg's pipeline)
        cols = [*keys, *counters]
        arrays, source = _unnest(conn, table, cols, [[r[c] for r in rows] for c in cols])
        q = conn.dialect.identifier_preparer.quote
        name = _table_name(conn, table)
        sets = ", ".join(f"{q(c)} = {name}.{q(c)} + EXCLUDED.{q(c)}" for c in counters)
        _execute_binary(
            conn,
            f"INSERT INTO {name} ({', '.join(q(c) for c in cols)}) SELECT * FROM {source} "
            f"ON CONFLICT ({', '.join(q(c) for c in keys)}) DO UPDATE SET {sets}",
            arrays,
        )
        return
    stmt = _insert_for(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: table.c[c] + stmt.excluded[c] for c in counters})
    conn.execute(stmt, rows)


def _table_name(conn: Connection, table: Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _execute_binary(conn: Connection, sql: str, params: tuple[Any, ...]) -> None:
    """One statement on the psycopg connection itself (its ``%b`` parameters go in binary: arrays
    of thousands of values, no text quoting of each)."""
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(sql, params)


def _unnest(conn: Connection, table: Table, columns: list[str], values: list[list[Any]]) -> tuple[tuple[Any, ...], str]:
    """PostgreSQL: the ``values`` of each of ``columns`` as one array parameter each, and
    ``unnest(%b::TYPE[], ...)`` reading them back as rows of the columns' types (amounts stay
    exact: NUMERIC arrays of Python ints)."""
    types = [table.c[c].type.compile(dialect=conn.dialect) for c in columns]
    return tuple(values), "unnest(" + ", ".join(f"%b::{t}[]" for t in types) + ")"


def upsert_licenses(conn: Connection, licenses: dict[tuple[str, int, int], Row]) -> None:
    """The latest terms of each (licensee, work, kind) bought in the range, adding up the fees paid."""
    if not licenses:
        return
    t = table_of(License)
    stmt = _insert_for(conn, t)
    stmt = stmt.on_conflict_do_update(
        index_elements=["licensee", "work_id", "kind"],
        set_={
            "rate_per_play": stmt.excluded.rate_per_play,
            "expiry": stmt.excluded.expiry,
            "prev_rate_per_play": stmt.excluded.prev_rate_per_play,
            "prev_expiry": stmt.excluded.prev_expiry,
            "updated_block": stmt.excluded.updated_block,
            "fees_paid": t.c.fees_paid + stmt.excluded.fees_paid,
        },
    )
    conn.execute(stmt, list(licenses.values()))
