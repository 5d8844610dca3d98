"""The indexer's write pipeline: range N is committed on the writer thread while range N+1 is read
and projected, in order, at most one range in flight, and a failed commit stops the run before
anything after it is written."""

from __future__ import annotations

import logging
import sys
import threading

import pytest
from sqlalchemy import select

from ledger.indexer import Indexer
from ledger.indexer.pipeline import SWITCH_INTERVAL, RangeWrite, RangeWriter
from ledger.indexer.projection import RangeRows
from ledger.models import IndexerCheckpoint

from ledger_helpers import index, table_snapshot


class Boom(RuntimeError):
    pass


def _job(start: int) -> RangeWrite:
    return RangeWrite(RangeRows(), start, start, f"0x{start:064x}", {})


def test_writer_commits_in_order_one_at_a_time_on_its_own_thread():
    done: list[tuple[int, str]] = []
    in_flight = []

    def commit(job: RangeWrite) -> None:
        in_flight.append(job.start)
        assert len(in_flight) == 1  # never two at once
        done.append((job.start, threading.current_thread().name))
        in_flight.pop()

    with RangeWriter(commit) as writer:
        for start in range(5):
            writer.submit(_job(start))
    assert [s for s, _ in done] == [0, 1, 2, 3, 4]
    assert all(name.startswith("ledger-indexer-writer") for _, name in done)
    assert not writer.in_flight


def test_the_switch_interval_is_lowered_while_a_pipeline_runs_and_put_back_after():
    """The writer wins the GIL back from the projection sooner (see ledger.indexer.pipeline)."""
    before = sys.getswitchinterval()
    seen = []
    with RangeWriter(lambda job: seen.append(sys.getswitchinterval())) as writer:
        writer.submit(_job(0))
        with RangeWriter(lambda job: seen.append(sys.getswitchinterval())) as inner:  # two indexers at once
            inner.submit(_job(0))
        assert sys.getswitchinterval() == SWITCH_INTERVAL  # the first one still runs
        writer.submit(_job(1))
    assert seen == [SWITCH_INTERVAL] * 3 and before > SWITCH_INTERVAL
    assert sys.getswitchinterval() == before


def test_submit_raises_the_error_of_the_range_before_and_writes_nothing_after_it():
    done: list[int] = []

    def commit(job: RangeWrite) -> None:
        if job.start == 1:
            raise Boom("range 1")
        done.append(job.start)

    writer = RangeWriter(commit)
    with pytest.raises(Boom):
        with writer:
            for start in range(4):
                writer.submit(_job(start))
    assert done == [0]  # range 2 was never handed over, range 3 never reached


def test_an_error_of_the_write_in_flight_does_not_hide_the_callers_error(caplog):
    release = threading.Event()

    def commit(job: RangeWrite) -> None:
        release.wait(10)
        raise Boom("the write in flight")

    with caplog.at_level(logging.WARNING, logger="ledger.indexer"):
        with pytest.raises(KeyError):
            with RangeWriter(commit) as writer:
                writer.submit(_job(0))
                release.set()
                raise KeyError("the caller's")
    assert "the write in flight" in caplog.text


def test_next_range_is_read_and_projected_while_the_previous_one_commits(engine, w3, deployment, history):
    """The commit of the first range waits until the indexer has read the second range: it can
    only finish if the reading goes on beside it (a sequential indexer would wait out the timeout).
    The result equals a plain index."""
    reference = table_snapshot_of_plain_index(engine, w3, deployment)
    read_next = threading.Event()
    overlapped: list[bool] = []
    threads: set[bool] = set()

    class Watched(Indexer):
        def _write(self, job):
            threads.add(threading.current_thread() is threading.main_thread())
            if not overlapped:
                overlapped.append(read_next.wait(10))
            super()._write(job)

    indexer = Watched(engine, w3, deployment, block_range=6, progress=False)
    indexer.reset()
    logs = indexer.source.logs
    first = deployment.deploy_block

    def watched_logs(start, end):
        if start > first:
            read_next.set()
        return logs(start, end)

    indexer.source.logs = watched_logs
    stats = indexer.run()
    assert overlapped == [True]
    assert threads == {False}  # every range committed on the writer thread
    assert stats.ranges > 2
    assert table_snapshot(engine) == reference


def table_snapshot_of_plain_index(engine, w3, deployment):
    index(engine, w3, deployment, block_range=6)
    snapshot = table_snapshot(engine)
    return snapshot


def test_a_failed_commit_stops_before_the_next_range_and_the_rerun_is_exact(engine, w3, deployment, history):
    """The third range's commit fails while the fourth is projected: the checkpoint stays at the
    end of the second, nothing of the third or fourth is written, and the same object indexes the
    rest exactly (its projection, which held the third and fourth, is loaded again)."""
    reference = table_snapshot_of_plain_index(engine, w3, deployment)
    commits: list[int] = []

    class FailsOnce(Indexer):
        def _write(self, job):
            commits.append(job.start)
            if len(commits) == 3:
                raise Boom("third range")
            super()._write(job)

    indexer = FailsOnce(engine, w3, deployment, block_range=6, progress=False)
    indexer.reset()
    with pytest.raises(Boom):
        indexer.run()
    with engine.connect() as conn:
        cp = conn.execute(select(IndexerCheckpoint.block_number)).scalar_one()
    assert cp == commits[2] - 1  # the end of the second range
    assert len(commits) == 3  # the fourth range was projected but never handed to the writer
    indexer.run()
    assert table_snapshot(engine) == reference
