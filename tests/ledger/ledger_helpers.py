"""Helpers shared by the ledger tests."""

from __future__ import annotations

from sqlalchemy import func, select

from ledger.indexer import Indexer
from ledger.models import INDEXED_TABLES, Play
from ledger.statements import Period, statement

MONTHS = [
    Period(),
    Period(202610, 202610),
    Period(202611, 202611),
    Period(202612, 202612),
    Period(202610, 202611),
    Period(202701, 202701),
]


def index(engine, w3, deployment, **kwargs):
    return Indexer(engine, w3, deployment, progress=False, **kwargs).run()


def all_statements_csv(engine, history) -> bytes:
    """Every payee's statement for every period of interest, concatenated."""
    out = []
    for payee in history.payees:
        for period in MONTHS:
            out.append(statement(engine, payee, period).to_csv())
    return "".join(out).encode()


def table_snapshot(engine) -> dict[str, list[tuple]]:
    """All indexed rows of every table (without surrogate ids and wall-clock times), sorted.

    ``indexed_blocks`` is left out: which block hashes are kept depends on how the blocks were cut
    into ranges, not on the chain's events."""
    snap = {}
    with engine.connect() as conn:
        for table in INDEXED_TABLES:
            if table.name == "indexed_blocks":
                continue
            cols = [c for c in table.c if c.name not in ("id", "updated_at")]
            rows = conn.execute(select(*cols)).all()
            snap[table.name] = sorted(tuple(r) for r in rows)
    return snap


def play_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Play)).scalar_one()
