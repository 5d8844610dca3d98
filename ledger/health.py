"""Whether the ledger can make progress: the node, the index and the relayer's backlog.

`/api/v1/health` answers with :func:`check` (503 when :attr:`Health.ok` is false). Every state is
derived from what the services leave behind, so it holds across processes and machines:

- **chain**: the node answers (its head block).
- **database**: the index database answers.
- **indexer**: lag = head - the checkpoint's block. ``lagging`` when the lag exceeds the
  confirmations plus ``max_lag``; ``stalled`` when it is lagging and the checkpoint has not moved
  for ``stall_after`` seconds (the indexer is down or stuck).
- **relayer**: backlog = batches pending or in flight; ``stalled`` when the oldest batch still
  waiting was received more than ``stall_after`` seconds ago (batches waiting for an escrow top-up,
  or held back because they pay nobody and their licensee's daily allowance is spent, do not
  count: they wait for the licensee, not for the relayer).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, or_, select
from web3 import Web3

from .config import Settings
from .models import IndexerCheckpoint
from .pending import INFLIGHT, PENDING, PendingBatch

OK, LAGGING, STALLED, DOWN = "ok", "lagging", "stalled", "down"
INSUFFICIENT_ESCROW = "InsufficientEscrow"
UNLICENSED_LIMIT = "UnlicensedLimit"  # ledger.relayer.unlicensed: held back, not stalled


@dataclass
class Health:
    chain: dict[str, Any] = field(default_factory=dict)
    database: dict[str, Any] = field(default_factory=dict)
    indexer: dict[str, Any] = field(default_factory=dict)
    relayer: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """False when the ledger cannot make progress (a 503)."""
        return all(
            part.get("state") in (OK, LAGGING) for part in (self.chain, self.database, self.indexer, self.relayer)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unavailable", **asdict(self)}


def check(
    w3: Web3,
    engine: Engine,
    *,
    confirmations: int = 0,
    max_lag: int = 20,
    stall_after: float = 120.0,
    now: float | None = None,
) -> Health:
    """The health of the ledger as the node and the database show it now."""
    now = time.time() if now is None else now
    health = Health()
    head: int | None = None
    try:
        head = int(w3.eth.block_number)
        health.chain = {"state": OK, "head": head}
    except Exception as exc:  # noqa: BLE001 - any failure to answer means down
        health.chain = {"state": DOWN, "error": type(exc).__name__}
    try:
        with engine.connect() as conn:
            checkpoint = conn.execute(select(IndexerCheckpoint.block_number, IndexerCheckpoint.updated_at)).first()
            waiting = (PendingBatch.status == INFLIGHT) | (
                (PendingBatch.status == PENDING)
                & or_(
                    PendingBatch.reason.is_(None), PendingBatch.reason.not_in((INSUFFICIENT_ESCROW, UNLICENSED_LIMIT))
                )
            )
            backlog, oldest = conn.execute(
                select(func.count(), func.min(PendingBatch.received_at)).where(waiting)
            ).one()
            unpayable = conn.execute(
                select(func.count()).where(PendingBatch.status == PENDING, PendingBatch.reason == INSUFFICIENT_ESCROW)
            ).scalar()
            unlicensed = conn.execute(
                select(func.count()).where(PendingBatch.status == PENDING, PendingBatch.reason == UNLICENSED_LIMIT)
            ).scalar()
        health.database = {"state": OK}
    except Exception as exc:  # noqa: BLE001 - any failure to answer means down
        health.database = {"state": DOWN, "error": type(exc).__name__}
        health.indexer = {"state": DOWN, "error": "database unavailable"}
        health.relayer = {"state": DOWN, "error": "database unavailable"}
        return health
    health.indexer = _indexer(checkpoint, head, confirmations, max_lag, stall_after, now)
    health.relayer = _relayer(int(backlog), oldest, int(unpayable or 0), stall_after, now)
    health.relayer["waiting_for_license"] = int(unlicensed or 0)
    return health


def _indexer(
    checkpoint: Any, head: int | None, confirmations: int, max_lag: int, stall_after: float, now: float
) -> dict[str, Any]:
    if checkpoint is None:
        return {"state": STALLED if head else OK, "lag": None, "detail": "the indexer has not run yet"}
    block, updated_at = int(checkpoint.block_number), int(checkpoint.updated_at)
    if head is None:
        return {"state": DOWN, "block": block, "lag": None, "detail": "the node does not answer"}
    lag = max(0, head - block)
    state = OK
    if lag > confirmations + max_lag:
        state = STALLED if now - updated_at > stall_after else LAGGING
    return {"state": state, "block": block, "lag": lag, "seconds_since_progress": max(0, int(now - updated_at))}


def _relayer(backlog: int, oldest: datetime | None, unpayable: int, stall_after: float, now: float) -> dict[str, Any]:
    age = None
    if oldest is not None:
        received = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)  # SQLite drops the zone
        age = max(0, int(now - received.timestamp()))
    state = STALLED if age is not None and age > stall_after else OK
    return {"state": state, "backlog": backlog, "oldest_waiting_seconds": age, "waiting_for_escrow": unpayable}


def check_settings(settings: Settings, engine: Engine) -> Health:
    """:func:`check` for the node of ``settings`` (a short timeout: a health check must answer)."""
    w3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 3}))
    return check(w3, engine, confirmations=settings.confirmations)
