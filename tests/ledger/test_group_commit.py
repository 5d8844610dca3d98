"""Group commit of the pending store: concurrent batches share one INSERT and one COMMIT, each
caller gets its own id only after that COMMIT, a collision is None (never a second row), and a
failed transaction fails every caller of its group and stores nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from ledger.ingest import GroupCommit
from ledger.pending import PENDING, PendingBatch, utcnow


def values(device_no: int, nonce: int, variant: int = 0) -> dict[str, object]:
    device = "0x" + f"{device_no:040x}"
    now = utcnow()
    return {
        "device": device,
        "licensee_index": 1,
        "device_number": device_no,
        "nonce": nonce,
        "from_time": 1,
        "to_time": 2,
        "entries": bytes(6),
        "signature": bytes(64),
        "digest": "0x" + f"{device_no:032x}{nonce:024x}{variant:08x}",
        "entry_count": 1,
        "plays": 1,
        "source": "http",
        "status": PENDING,
        "attempts": 0,
        "received_at": now,
        "updated_at": now,
    }


def stored(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(PendingBatch)).scalar_one()


def store_concurrently(group: GroupCommit, rows: list[dict[str, object]]) -> list[object]:
    """Each row from its own thread, the first one's transaction held open until all others queued."""
    release = threading.Event()
    original = group._write
    first = []

    def held_write(batch):
        if not first:
            first.append(len(batch))
            release.wait(30)
        return original(batch)

    group._write = held_write
    results: list[object] = [None] * len(rows)

    def call(i: int) -> None:
        try:
            results[i] = group.store(rows[i])
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[i] = exc

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    while not first:
        time.sleep(0.01)
    threads += [threading.Thread(target=call, args=(i,)) for i in range(1, len(rows))]
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 30
    while len(group._queue) < len(rows) - 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(60)
    group._write = original
    return results


def test_concurrent_batches_share_a_transaction(engine):
    group = GroupCommit(engine)
    rows = [values(i % 7, i) for i in range(40)]
    results = store_concurrently(group, rows)
    assert all(isinstance(r, int) for r in results), results
    assert len(set(results)) == 40
    assert stored(engine) == 40
    assert group.groups == 2  # the first alone, then the 39 that queued during its commit
    assert group.rows == 40


def test_collisions_in_a_group_and_with_the_store_are_none(engine):
    group = GroupCommit(engine)
    assert isinstance(group.store(values(1, 0)), int)
    rows = [values(1, 0), values(2, 5), values(2, 5), values(2, 5, variant=1), values(3, 1)]
    results = store_concurrently(group, [values(9, 9), *rows])
    assert isinstance(results[0], int)
    same, first, twin, conflict, fresh = results[1:]
    assert same is None  # stored by the earlier transaction
    # one (device, nonce) three times in one group (twice the same digest, once another): one
    # row, whichever queued first; the others are None and look the stored one up
    assert sorted(isinstance(r, int) for r in (first, twin, conflict)) == [False, False, True]
    assert isinstance(fresh, int)
    assert stored(engine) == 4


def test_a_failed_transaction_fails_its_whole_group_and_stores_nothing(engine):
    group = GroupCommit(engine)
    original = group._write
    calls = []

    def failing(batch):
        calls.append(len(batch))
        raise OperationalError("INSERT", {}, Exception("the database went away"))

    group._write = failing
    rows = [values(4, i) for i in range(10)]
    results = store_concurrently(group, rows)
    assert all(isinstance(r, OperationalError) for r in results), results
    assert sum(calls) == 10
    assert stored(engine) == 0
    group._write = original
    assert isinstance(group.store(values(4, 0)), int)  # the next caller leads again
    assert stored(engine) == 1


@pytest.mark.parametrize("callers", [1, 300])
def test_groups_are_capped(sqlite_engine, callers):
    group = GroupCommit(sqlite_engine, max_rows=64)
    results = store_concurrently(group, [values(5, i) for i in range(callers)])
    assert all(isinstance(r, int) for r in results)
    assert stored(sqlite_engine) == callers
    assert group.groups >= 1 + (callers - 1 + 63) // 64
