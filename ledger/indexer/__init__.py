"""Contract events -> SQL index, one block range per SQL transaction.

How it stays exact:

- It reads logs of the three contracts (the token only for transfers into or out of the
  RoyaltyLedger) with ``eth_getLogs`` over ``[checkpoint + 1, head - confirmations]`` in ranges of
  ``block_range`` blocks, in (block, log index) order.
- Each range is written in ONE transaction together with the new checkpoint: after a crash the
  index is at the end of the last committed range and the next run starts right after it.
- Range N is committed on a writer thread while range N+1 is read and projected (``pipeline``: at
  most one range in flight, committed in order; a write's error stops the run at the next range
  and the in-memory projection is reloaded from the index). A rollback, a rebuild or a reload of
  the projection first waits for the write in flight.
- Event rows have unique keys (block, log index[, part]); writing an event twice fails loudly
  instead of counting it twice.
- It derives what the events imply exactly as the chain does: a ``Distributed`` amount is split
  by the latest ``SplitSet`` of the work (``playbatch.split_shares``); a play entry is licensed when
  the device's licensee holds a METERED license on the work with expiry >= the batch's toTime,
  and costs count * the license's rate; the licensed amounts of a batch must add up to its
  ``charged`` or the indexer stops with :class:`InconsistentEventError`.
- Bulk writes only: COPY into ``plays`` on PostgreSQL, executemany elsewhere; counters and the
  per (work, month, territory) summary are aggregated in memory and upserted once per range.

The package, one module per job; :class:`Indexer` here composes them:

- ``source``: logs and block timestamps from the node (adaptive range shrinking);
- ``projection``: decoded events -> rows and counters of a range (no database, no web3);
- ``writer``: a range's rows into SQL in bulk, and the projection state read back;
- ``pipeline``: the writer thread committing each range with its checkpoint;
- ``checkpoint``: the last indexed block and its hash;
- ``rollback``: after a reorg, the nearest common ancestor and the rollback of the rows above it.

Reorgs and chains that went backwards: each range checks that its first block's parent is the
block the checkpoint stored, that every log's block hash is the hash of the block read, and that
the last block's hash did not change while the range was read; the hashes of the blocks read are
kept (``indexed_blocks``, the last ``max_reorg_depth`` blocks). When the checkpoint's block (or a
range's parent) left the chain, the index is rolled back in ONE transaction to the newest stored
block still on the chain (``rollback.find_ancestor``), subtracting exactly what the rows above it
contributed, and indexing goes on from there. Only when no stored block within
``max_reorg_depth`` is on the chain does it fall back to the deploy block.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.exc import InterfaceError, OperationalError
from web3 import Web3

from ..chain import Deployment
from ..errors import ReorgDetectedError
from ..events import EventDecoder
from ..models import IndexerCheckpoint
from . import checkpoint, rollback, writer
from .checkpoint import CHECKPOINT_ID
from .pipeline import RangeWrite, RangeWriter, commit_range, threads_share
from .projection import ZERO_ADDRESS, PlayRow, Projection, Row, period_of
from .source import LogSource
from .writer import PLAY_COLUMNS

log = logging.getLogger("ledger.indexer")

#: Blocks below the checkpoint whose hashes are kept and searched for the common ancestor of a reorg.
DEFAULT_MAX_REORG_DEPTH = 1024
#: Reorgs met in one run before it gives up (the chain keeps moving under it).
MAX_ROLLBACKS_PER_RUN = 8


class _ChainMoved(Exception):
    """The chain changed while a range was read: read it again."""


__all__ = ["CHECKPOINT_ID", "PLAY_COLUMNS", "ZERO_ADDRESS", "IndexStats", "Indexer", "period_of"]


@dataclass
class IndexStats:
    from_block: int = 0
    to_block: int = -1
    ranges: int = 0
    events: int = 0
    plays_rows: int = 0
    seconds: float = 0.0
    rollbacks: list[tuple[int, int]] = field(default_factory=list)  # (checkpoint before, ancestor) per reorg

    @property
    def blocks(self) -> int:
        return max(0, self.to_block - self.from_block + 1)


class Indexer:
    """Follows the deployment's events into the database at ``engine`` (migrated to head)."""

    def __init__(
        self,
        engine: Engine,
        w3: Web3,
        deployment: Deployment,
        *,
        confirmations: int = 0,
        block_range: int = 2000,
        progress: bool | None = None,
        rebuild_on_reorg: bool = True,
        max_reorg_depth: int = DEFAULT_MAX_REORG_DEPTH,
    ) -> None:
        self.engine = engine
        self.w3 = w3
        self.deployment = deployment
        self.confirmations = confirmations
        self.block_range = max(1, block_range)
        self.progress = progress
        self.rebuild_on_reorg = rebuild_on_reorg
        self.max_reorg_depth = max(1, max_reorg_depth)
        self.decoder: EventDecoder = deployment.event_decoder()
        self.ledger_address = deployment.ledger.address
        self.source = LogSource(w3, deployment, self.decoder)
        self._projection: Projection | None = None  # loaded from the index on first use
        self._writer: RangeWriter | None = None  # during run(): the range being committed
        self._tip_hash: str | None = None  # during run(): hash of the last block handed to the writer

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self) -> IndexerCheckpoint | None:
        return checkpoint.load(self.engine)

    def reset(self) -> None:
        """Empties every indexed table and the checkpoint, in one transaction."""
        self._drain()
        checkpoint.reset(self.engine)
        self._projection = None
        self.source.timestamps.clear()

    # ------------------------------------------------------------------ running
    def head(self) -> int:
        return self.source.head() - self.confirmations

    def run(self, to_block: int | None = None, rebuild: bool = False) -> IndexStats:
        """Indexes from the checkpoint to `to_block` (default: head - confirmations)."""
        started = time.monotonic()
        with RangeWriter(self._write, threaded=threads_share(self.engine)) as self._writer:
            try:
                stats = self._run(to_block, rebuild)
            except BaseException:
                # the range in flight is committed or not (the context waits for it); what the
                # projection holds may not be: it is loaded again from the index next time
                self._projection = None
                raise
            finally:
                self._writer = None
        stats.seconds = time.monotonic() - started
        return stats

    def _drain(self) -> None:
        """Waits for the range being committed (raising its error): nothing is in flight after it."""
        if self._writer is not None:
            try:
                self._writer.drain()
            except BaseException:
                self._projection = None
                raise

    def _run(self, to_block: int | None, rebuild: bool) -> IndexStats:
        if rebuild:
            self.reset()
        stats = IndexStats()
        while True:
            try:
                last = checkpoint.ensure(self.engine, self.deployment, self.source.block_hash)
                break
            except ReorgDetectedError as exc:
                self._recover(exc, stats)
        self._tip_hash = self._checkpoint_hash()
        target = self.head() if to_block is None else min(to_block, self.head())
        stats.from_block, stats.to_block = last + 1, target
        if target <= last:
            stats.to_block = last
            return stats
        bar = self._progress_bar(target - last)
        try:
            start = last + 1
            retries = 0
            while start <= target:
                end = min(start + self.block_range - 1, target)
                try:
                    events, plays, end = self._index_range(start, end)
                except ReorgDetectedError as exc:
                    start = self._recover(exc, stats) + 1
                    stats.from_block = min(stats.from_block, start)
                    target = self.head() if to_block is None else min(to_block, self.head())
                    continue
                except _ChainMoved as exc:
                    retries += 1
                    if retries > MAX_ROLLBACKS_PER_RUN:
                        raise ReorgDetectedError(f"the chain keeps changing under the indexer: {exc}") from exc
                    log.info("indexer: %s; reading blocks %d..%d again", exc, start, end)
                    continue
                stats.ranges += 1
                stats.events += events
                stats.plays_rows += plays
                if bar is not None:
                    bar.update(end - start + 1)
                    bar.set_postfix(events=stats.events, plays=stats.plays_rows, refresh=False)
                start = end + 1
            self._drain()  # run() returns with every range it indexed committed
            stats.to_block = max(stats.to_block, start - 1)
        finally:
            if bar is not None:
                bar.close()
        return stats

    def _recover(self, exc: ReorgDetectedError, stats: IndexStats) -> int:
        """Rolls the index back to the nearest common ancestor with the chain (else to the deploy
        block), in one transaction; returns the new checkpoint."""
        if not self.rebuild_on_reorg or len(stats.rollbacks) >= MAX_ROLLBACKS_PER_RUN:
            raise exc
        self._drain()  # the rollback never races a write in flight
        self._projection = None  # reloaded from the rolled-back tables
        with self.engine.begin() as conn:
            query = select(IndexerCheckpoint.block_number).where(IndexerCheckpoint.id == CHECKPOINT_ID)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # one indexer at a time rolls back (as in checkpoint.claim)
            cp = conn.execute(query).scalar_one()
            ancestor = rollback.find_ancestor(conn, self.source.block_hash, cp, self.max_reorg_depth)
            if ancestor is not None:
                try:
                    deleted = rollback.roll_back(conn, ancestor.block_number, ancestor.block_hash)
                except rollback.NeedsRebuild as why:
                    log.warning("indexer: %s; cannot roll back in part", why)
                    ancestor = None
        if ancestor is None:
            # No stored block within max_reorg_depth is on the chain (a devnet restarted from a much
            # older state): what the index holds after the deploy block is fiction. Index it all again.
            log.warning(
                "indexer: %s; no common block within %d blocks: rebuilding from the deploy block",
                exc,
                self.max_reorg_depth,
            )
            self.reset()
            stats.rollbacks.append((cp, self.deployment.deploy_block - 1))
            last = checkpoint.ensure(self.engine, self.deployment, self.source.block_hash)
            self._tip_hash = self._checkpoint_hash()
            return last
        self.source.forget(above=ancestor.block_number)
        log.warning(
            "indexer: %s; rolled back from block %d to the common ancestor %d (%d blocks asked; rows deleted: %s)",
            exc,
            cp,
            ancestor.block_number,
            ancestor.probes,
            ", ".join(f"{k} {v}" for k, v in deleted.items() if v) or "none",
        )
        stats.rollbacks.append((cp, ancestor.block_number))
        self._tip_hash = self._checkpoint_hash()
        return ancestor.block_number

    def follow(
        self,
        poll_interval: float = 2.0,
        should_stop: Callable[[], bool] = lambda: False,
        on_stats: Callable[[IndexStats], None] | None = None,
    ) -> None:
        """Indexes new blocks as they come, until should_stop() (or KeyboardInterrupt). A node or a
        database that stops answering is waited for (1 s doubling to 30 s, each wait logged); the
        range in progress is either committed or not at all, so nothing is lost or doubled."""
        delay = 1.0
        while not should_stop():
            try:
                stats = self.run()
            except (OperationalError, InterfaceError, ConnectionError, TimeoutError, requests.RequestException) as exc:
                log.warning(
                    "indexer: %s unreachable (%s); retrying in %.0f s",
                    "database" if isinstance(exc, (OperationalError, InterfaceError)) else "node",
                    type(exc).__name__,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            if on_stats is not None and stats.ranges:
                on_stats(stats)
            time.sleep(poll_interval)

    def _progress_bar(self, blocks: int) -> Any:
        """A tqdm bar over ``blocks`` blocks, or None when progress is off (default: on a terminal, long runs)."""
        show = self.progress
        if show is None:
            show = sys.stderr.isatty() and blocks > 5 * self.block_range
        if not show:
            return None
        from tqdm import tqdm

        return tqdm(total=blocks, unit="block", desc="indexing", dynamic_ncols=True)

    # ------------------------------------------------------------------ one range
    def _index_range(self, start: int, end: int) -> tuple[int, int, int]:
        source = self.source
        end_hash = source.block_hash(end)
        logs, read_end = source.logs(start, end)
        if read_end != end:
            end, end_hash = read_end, source.block_hash(read_end)
        blocks = {start, end} | {e["blockNumber"] for e in logs}
        source.forget(above=start - 1)  # blocks of this range are read afresh, never from the cache
        source.load_timestamps(blocks)
        parent = self._tip_hash  # the checkpoint's hash once the range in flight is committed
        if parent is not None and source.parents[start] != parent:
            raise ReorgDetectedError(
                f"block {start - 1} at the checkpoint is no longer on the chain (the parent of block {start} "
                f"is {source.parents[start]}, not {parent})"
            )
        if source.hashes[end] != end_hash:
            raise _ChainMoved(f"block {end} changed while blocks {start}..{end} were read")
        for entry in logs:
            if "0x" + bytes(entry["blockHash"]).hex() != source.hashes[entry["blockNumber"]]:
                raise _ChainMoved(f"a log of block {entry['blockNumber']} is of another block with that number")
        if self._projection is None:
            self._drain()  # the state is read from the index: with nothing in flight
            with self.engine.connect() as conn:
                self._projection = Projection(writer.load_state(conn))
        projection = self._projection
        try:
            decode = self.decoder.decode
            batch = projection.project((decode(entry) for entry in logs), source.timestamps)
            hashes = {n: source.hashes[n] for n in blocks}
            job = RangeWrite(batch, start, end, end_hash, hashes)
            if self._writer is None:
                self._write(job)
            else:
                self._writer.submit(job)  # waits for the range before it, raising its error
        except BaseException:
            self._projection = None  # its state may hold changes of ranges that were not written
            raise
        self._tip_hash = end_hash
        return batch.events, len(batch.plays), end

    def _checkpoint_hash(self) -> str | None:
        with self.engine.connect() as conn:
            value: str | None = conn.execute(
                select(IndexerCheckpoint.block_hash).where(IndexerCheckpoint.id == CHECKPOINT_ID)
            ).scalar()
        return value

    def _write(self, job: RangeWrite) -> None:
        """One range and its checkpoint in one transaction (on the writer thread during run())."""
        commit_range(self.engine, job, self.max_reorg_depth, self._write_rows, self._write_plays)

    # ------------------------------------------------------------------ bulk writers (hooks)
    def _write_rows(self, conn: Connection, table: Table, rows: list[Row]) -> None:
        """Bulk insert (one executemany). Tests wrap this to inject failures."""
        writer.write_rows(conn, table, rows)

    def _write_plays(self, conn: Connection, rows: list[PlayRow]) -> None:
        """Play rows: COPY on PostgreSQL, executemany elsewhere. Tests wrap this to inject failures."""
        writer.write_plays(conn, rows)
