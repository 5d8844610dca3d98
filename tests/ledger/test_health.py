"""ledger.health: what /api/v1/health reports, from the node and the database as they are."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from sqlalchemy import insert

from ledger import health
from ledger.db import session_factory
from ledger.models import IndexerCheckpoint
from ledger.pending import PENDING, PendingBatch

NOW = 1_800_000_000.0


def node(head: int | None) -> SimpleNamespace:
    if head is None:

        class Down:
            @property
            def block_number(self):
                raise ConnectionError("refused")

        return SimpleNamespace(eth=Down())
    return SimpleNamespace(eth=SimpleNamespace(block_number=head))


def _checkpoint(engine, block: int, updated_at: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(IndexerCheckpoint).values(
                id=1,
                chain_id=31337,
                ledger_address="0x" + "00" * 20,
                deploy_block=1,
                block_number=block,
                block_hash=None,
                updated_at=int(updated_at),
            )
        )


def _pending(engine, received: float, reason: str | None = None) -> None:
    with session_factory(engine)() as s:
        s.add(
            PendingBatch(
                device="0x" + "11" * 20,
                licensee_index=1,
                device_number=1,
                nonce=int(received) % 10**6,
                from_time=1,
                to_time=2,
                entries=b"\0" * 6,
                signature=b"\0" * 64,
                digest=f"0x{int(received):064x}",
                entry_count=1,
                plays=1,
                source="http",
                status=PENDING,
                attempts=0,
                reason=reason,
                received_at=datetime.fromtimestamp(received, UTC),
            )
        )
        s.commit()


def test_a_caught_up_index_and_an_empty_backlog_are_healthy(sqlite_engine):
    _checkpoint(sqlite_engine, 100, NOW - 500)
    h = health.check(node(105), sqlite_engine, now=NOW)
    assert h.ok and h.indexer["lag"] == 5 and h.relayer["backlog"] == 0


def test_an_index_far_behind_that_does_not_move_is_stalled(sqlite_engine):
    _checkpoint(sqlite_engine, 100, NOW - 500)
    h = health.check(node(1_000), sqlite_engine, now=NOW)
    assert (h.indexer["state"], h.ok) == (health.STALLED, False)


def test_an_index_far_behind_that_moves_is_only_lagging(sqlite_engine):
    _checkpoint(sqlite_engine, 100, NOW - 5)
    h = health.check(node(1_000), sqlite_engine, now=NOW)
    assert (h.indexer["state"], h.ok) == (health.LAGGING, True)


def test_old_waiting_batches_mean_a_stalled_relayer_but_escrow_waits_do_not(sqlite_engine):
    _checkpoint(sqlite_engine, 100, NOW)
    _pending(sqlite_engine, NOW - 3_600, reason="InsufficientEscrow")
    h = health.check(node(100), sqlite_engine, now=NOW)
    assert h.ok and h.relayer["waiting_for_escrow"] == 1 and h.relayer["backlog"] == 0
    _pending(sqlite_engine, NOW - 600)
    h = health.check(node(100), sqlite_engine, now=NOW)
    assert (h.relayer["state"], h.relayer["backlog"], h.ok) == (health.STALLED, 1, False)


def test_batches_held_back_for_the_unlicensed_allowance_are_not_a_stalled_relayer(sqlite_engine):
    _checkpoint(sqlite_engine, 100, NOW)
    _pending(sqlite_engine, NOW - 3_600, reason="UnlicensedLimit")
    h = health.check(node(100), sqlite_engine, now=NOW)
    assert h.ok and h.relayer["waiting_for_license"] == 1 and h.relayer["backlog"] == 0


def test_a_node_that_does_not_answer_is_down(sqlite_engine):
    h = health.check(node(None), sqlite_engine, now=NOW)
    assert h.chain["state"] == health.DOWN and not h.ok
    assert h.to_dict()["status"] == "unavailable"
