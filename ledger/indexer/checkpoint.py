"""The checkpoint: the last block written to the index, and the hash it had.

It owns the single ``indexer_checkpoint`` row: creating it (deploy block - 1) on first use, refusing
an index of another chain or ledger, detecting a checkpoint block that left the chain, claiming a
range inside the range's transaction and advancing past it, and emptying the whole index.
The node is reached only through the ``block_hash`` callable it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

from sqlalchemy import Connection, Engine, Table, delete, insert, select, text, update
from sqlalchemy.orm import Session
from web3.exceptions import BlockNotFound

from ..chain import Deployment
from ..errors import IndexerError, ReorgDetectedError
from ..models import INDEXED_TABLES, IndexedBlock, IndexerCheckpoint

CHECKPOINT_ID = 1
_CHECKPOINTS = cast(Table, IndexerCheckpoint.__table__)  # SQLAlchemy types __table__ as any FromClause


def load(engine: Engine) -> IndexerCheckpoint | None:
    """The checkpoint row, or None before the first run."""
    with Session(engine) as session:
        return session.get(IndexerCheckpoint, CHECKPOINT_ID)


def ensure(engine: Engine, deployment: Deployment, block_hash: Callable[[int], str]) -> int:
    """The last indexed block, creating the checkpoint (deploy block - 1) on first use.

    Raises :class:`IndexerError` for an index of another chain or ledger, and :class:`ReorgDetectedError`
    when ``block_hash`` of the checkpoint block is no longer the hash stored with it.
    """
    t = _CHECKPOINTS
    ledger_address = deployment.ledger.address
    with engine.begin() as conn:
        row = conn.execute(select(t).where(t.c.id == CHECKPOINT_ID)).first()
        if row is None:
            conn.execute(
                insert(t).values(
                    id=CHECKPOINT_ID,
                    chain_id=deployment.chain_id,
                    ledger_address=ledger_address,
                    deploy_block=deployment.deploy_block,
                    block_number=deployment.deploy_block - 1,
                    block_hash=None,
                    updated_at=int(time.time()),
                )
            )
            return deployment.deploy_block - 1
    if row.ledger_address != ledger_address or row.chain_id != deployment.chain_id:
        raise IndexerError(
            f"the index holds chain {row.chain_id} ledger {row.ledger_address}, not chain "
            f"{deployment.chain_id} ledger {ledger_address}: use `ledger index --rebuild`"
        )
    if row.block_hash is not None:
        try:
            current = block_hash(row.block_number)
        except BlockNotFound:  # the chain went backwards past the checkpoint (a devnet restarted)
            current = None
        if current != row.block_hash:
            raise ReorgDetectedError(
                f"block {row.block_number} at the checkpoint is no longer on the chain "
                "(a reorg deeper than the confirmations, or a devnet restarted from an older state)"
            )
    number: int = row.block_number
    return number


def claim(conn: Connection, start: int) -> None:
    """Inside a range's transaction: checks (and on PostgreSQL locks) that the checkpoint is at ``start - 1``."""
    cp = _CHECKPOINTS
    query = select(cp.c.block_number).where(cp.c.id == CHECKPOINT_ID)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    current: int = conn.execute(query).scalar_one()
    if current != start - 1:
        raise IndexerError(
            f"the checkpoint moved to {current} while indexing from {start}: "
            "is another indexer running on this database?"
        )


def advance(conn: Connection, end: int, end_hash: str) -> None:
    """Inside a range's transaction: moves the checkpoint to block ``end`` with hash ``end_hash``."""
    cp = _CHECKPOINTS
    conn.execute(
        update(cp)
        .where(cp.c.id == CHECKPOINT_ID)
        .values(block_number=end, block_hash=end_hash, updated_at=int(time.time()))
    )


def keep_hashes(conn: Connection, hashes: dict[int, str], below: int) -> None:
    """Inside a range's transaction: stores the hashes of the blocks read, and forgets those below ``below``."""
    t = cast(Table, IndexedBlock.__table__)
    if hashes:
        conn.execute(insert(t), [{"block_number": n, "block_hash": h} for n, h in sorted(hashes.items())])
    conn.execute(delete(t).where(t.c.block_number < below))


def reset(engine: Engine) -> None:
    """Empties every indexed table and the checkpoint, in one transaction."""
    tables = [cast(Table, t) for t in INDEXED_TABLES]
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(t.name for t in tables)))
        else:
            for table in tables:
                conn.execute(delete(table))
