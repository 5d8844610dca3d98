"""The write pipeline: range N is committed on a writer thread while range N+1 is read and projected.

One writer thread commits the ranges in the order they are handed over, each in ONE transaction
together with the checkpoint that moves past it (:func:`commit_range`). At most one range is in
flight: :meth:`RangeWriter.submit` first waits for the previous range's commit, and raises its
error if it failed, before handing over the next. So the index on disk is always at the end of a
whole range, and a crash at any point loses or doubles nothing (the uncommitted range is read
again by the next run, its checkpoint check refuses a range twice).

What the caller must do: after an error from :meth:`submit` or :meth:`drain` the in-memory
projection holds changes of ranges that were never committed; throw it away and load it again
from the index (after :meth:`drain`). Before anything that reads or rewrites the index as a whole
(loading the projection state, a rollback after a reorg, a rebuild) call :meth:`drain` so that no
write is in flight.

The thread runs while the caller projects; the projection is Python and holds the GIL, the commit
mostly waits on the database (COPY and the upserts run in the server process), so the two overlap.
Each time the writer's socket answers, it must win the GIL back from the projection, which keeps it
for the interpreter's switch interval (5 ms by default) first; a commit waits on the server a few
dozen times, so while a pipeline runs the process's switch interval is lowered to
``SWITCH_INTERVAL`` (0.5 ms), and put back when the last pipeline ends. Measured on W3's write
(250,000 play rows), on 2 shared cores: in turn 119-122k rows/s; pipelined at 5 ms 109-130k, at
0.5 ms 125-136k.
An in-memory SQLite engine (one connection per thread) is written on the caller's thread instead.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from . import checkpoint, writer
from .projection import PlayRow, RangeRows, Row

log = logging.getLogger("ledger.indexer")

#: The interpreter's switch interval while a pipeline runs (see the module doc).
SWITCH_INTERVAL = 0.0005

_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


def _lower_switch_interval() -> None:
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL))
        _switch_users += 1


def _restore_switch_interval() -> None:
    global _switch_users
    with _switch_lock:
        _switch_users -= 1
        if _switch_users == 0:
            sys.setswitchinterval(_switch_saved)


WriteRows = Callable[[Connection, Table, list[Row]], None]
WritePlays = Callable[[Connection, list[PlayRow]], None]


@dataclass
class RangeWrite:
    """One range to commit: its rows, its blocks and the hashes of the blocks read in it."""

    rows: RangeRows
    start: int
    end: int
    end_hash: str
    hashes: dict[int, str]


def commit_range(
    engine: Engine,
    job: RangeWrite,
    max_reorg_depth: int,
    write_rows: WriteRows = writer.write_rows,
    write_plays: WritePlays = writer.write_plays,
) -> None:
    """One range in one transaction: claims the checkpoint (it must be at ``start - 1``), writes
    the rows, keeps the block hashes and advances the checkpoint to ``end``."""
    with engine.begin() as conn:
        checkpoint.claim(conn, job.start)
        writer.write_range(conn, job.rows, write_rows, write_plays)
        checkpoint.keep_hashes(conn, job.hashes, below=job.end - max_reorg_depth)
        checkpoint.advance(conn, job.end, job.end_hash)


def threads_share(engine: Engine) -> bool:
    """Whether a writer thread sees the same database as the caller (not so for in-memory SQLite)."""
    return not isinstance(engine.pool, (SingletonThreadPool, StaticPool))


class RangeWriter:
    """Commits ranges on one writer thread, in order, at most one in flight (see the module doc).

    Use as a context manager around one run: leaving it waits for the write in flight (an error
    of that write is raised unless another exception is already on its way, then it is logged).
    ``write_seconds`` is the time spent committing (on the writer thread), ``wait_seconds`` the
    time the caller was held up waiting for it.
    """

    def __init__(self, commit: Callable[[RangeWrite], None], threaded: bool = True) -> None:
        self._commit = commit
        self._threaded = threaded
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self.write_seconds = 0.0
        self.wait_seconds = 0.0

    def __enter__(self) -> RangeWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc is None:
                self.drain()
            else:
                self.wait_quietly()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
                _restore_switch_interval()

    def _timed(self, job: RangeWrite) -> None:
        t = time.perf_counter()
        try:
            self._commit(job)
        finally:
            self.write_seconds += time.perf_counter() - t

    def submit(self, job: RangeWrite) -> None:
        """Waits for the range in flight (raising its error), then starts committing ``job``."""
        self.drain()
        if not self._threaded:
            t = time.perf_counter()
            try:
                self._timed(job)
            finally:
                self.wait_seconds += time.perf_counter() - t
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-indexer-writer")
            _lower_switch_interval()  # put back when the pool is shut down
        self._pending = self._pool.submit(self._timed, job)

    @property
    def in_flight(self) -> bool:
        return self._pending is not None

    def drain(self) -> None:
        """Waits until nothing is in flight; raises the error of the write that was."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        t = time.perf_counter()
        try:
            pending.result()
        finally:
            self.wait_seconds += time.perf_counter() - t

    def wait_quietly(self) -> bool:
        """Waits until nothing is in flight; False (and the error logged) when that write failed."""
        try:
            self.drain()
        except BaseException as exc:  # noqa: BLE001 - another error is already on its way: this one is logged
            log.warning("indexer: the range being committed failed too: %s: %s", type(exc).__name__, exc)
            return False
        return True
