"""Contract events -> SQL index, one block range per SQL transaction.

How it stays exact:

- It reads logs of the three contracts (the token only for transfers into or out of the
  RoyaltyLedger) with ``eth_getLogs`` over ``[checkpoint + 1, head - confirmations]`` in ranges of
  ``block_range`` blocks, in (block, log index) order.
- Each range is written in ONE transaction together with the new checkpoint: after a crash the
  index is at the end of the last committed range and the next run starts right after it.
- Event rows have unique keys (block, log index[, part]); writing an event twice fails loudly
  instead of counting it twice.
- It derives what the events imply exactly as the chain does: a ``Distributed`` amount is split
  by the latest ``SplitSet`` of the work (``playbatch.split_shares``); a play entry is licensed when
  the device's licensee holds a METERED license on the work with expiry >= the batch's toTime,
  and costs count * the license's rate; the licensed amounts of a batch must add up to its
  ``charged`` or the indexer stops with :class:`InconsistentEventError`.
- Bulk writes only: COPY into ``plays`` on PostgreSQL, executemany elsewhere; counters and the
  per (work, month, territory) summary are aggregated in memory and upserted once per range.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Optional

from sqlalchemy import Engine, Table, bindparam, delete, insert, select, text, update
from web3 import Web3

from ..chain import Deployment, LicenseKind
from ..errors import IndexerError, InconsistentEventError, ReorgDetectedError
from ..events import DecodedEvent, EventDecoder
from ..metadata import isrc_from_bytes12, parse_metadata_uri
from ..models import (INDEXED_TABLES, BatchSkip, Device, Distribution, EscrowMovement, IndexerCheckpoint, License,
                     LicensePurchase, Licensee, Payee, PayeeCredit, PlayBatch, SplitShare, Terms, TokenTransfer,
                     Withdrawal, Work, WorkPeriodStats, WorkTransfer, WorkUriUpdate)
from ..playbatch import SKIP_REASONS, decode_play_records, split_shares

log = logging.getLogger(__name__)

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
CHECKPOINT_ID = 1
PLAY_COLUMNS = ("block_number", "log_index", "batch_index", "work_id", "device_id", "count", "licensed", "rate",
                "amount", "territory", "period")


def period_of(timestamp: int) -> int:
    """UTC month of a unix time as YYYYMM."""
    d = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return d.year * 100 + d.month


@dataclass
class IndexStats:
    from_block: int = 0
    to_block: int = -1
    ranges: int = 0
    events: int = 0
    plays_rows: int = 0
    seconds: float = 0.0

    @property
    def blocks(self) -> int:
        return max(0, self.to_block - self.from_block + 1)


# ----------------------------------------------------------------------------- in-memory state

@dataclass
class _State:
    """What decoding needs from earlier events, loaded from the index and advanced per event."""

    splits: dict[int, tuple[list[str], list[int]]] = field(default_factory=dict)
    licensee_by_index: dict[int, str] = field(default_factory=dict)
    index_by_licensee: dict[str, int] = field(default_factory=dict)
    metered: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # (licensee, work) -> (rate, expiry)
    territory: dict[int, str] = field(default_factory=dict)  # device id -> territory
    works: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, conn) -> "_State":
        state = cls()
        s = SplitShare.__table__
        current: dict[int, tuple[tuple[int, int], list[str], list[int]]] = {}
        for row in conn.execute(select(s.c.work_id, s.c.block_number, s.c.log_index, s.c.payee, s.c.bps)
                                .order_by(s.c.work_id, s.c.block_number, s.c.log_index, s.c.position)):
            key = (row.block_number, row.log_index)
            entry = current.get(row.work_id)
            if entry is None or entry[0] != key:
                entry = current[row.work_id] = (key, [], [])
            entry[1].append(row.payee)
            entry[2].append(row.bps)
        state.splits = {w: (p, b) for w, (_, p, b) in current.items()}
        state.licensee_by_index = dict(conn.execute(select(Licensee.licensee_index, Licensee.address)).all())
        state.index_by_licensee = {a: i for i, a in state.licensee_by_index.items()}
        lic = License.__table__
        for row in conn.execute(select(lic.c.licensee, lic.c.work_id, lic.c.rate_per_play, lic.c.expiry)
                                .where(lic.c.kind == int(LicenseKind.METERED))):
            state.metered[(row.licensee, row.work_id)] = (row.rate_per_play, row.expiry)
        state.territory = dict(conn.execute(select(Device.device_id, Device.territory)).all())
        state.works = set(conn.execute(select(Work.work_id)).scalars())
        return state


class _Keyed:
    """Rows of a keyed table touched by a range: new rows, counter deltas and plain updates."""

    def __init__(self, table: Table, key: str, counters: Iterable[str]):
        self.table, self.key, self.counters = table, key, tuple(counters)
        self.new: dict[Any, dict] = {}
        self.deltas: dict[Any, dict[str, int]] = {}
        self.sets: dict[Any, dict[str, Any]] = {}

    def insert(self, key, row: dict) -> None:
        for c in self.counters:
            row.setdefault(c, 0)
        row[self.key] = key
        self.new[key] = row

    def add(self, key, **amounts: int) -> None:
        row = self.new.get(key)
        if row is None:
            row = self.deltas.setdefault(key, dict.fromkeys(self.counters, 0))
        for c, v in amounts.items():
            row[c] += v

    def set(self, key, **values) -> None:
        row = self.new.get(key)
        if row is not None:
            row.update(values)
        else:
            self.sets.setdefault(key, {}).update(values)

    def flush(self, conn, write_rows) -> None:
        t, k = self.table, self.key
        if self.new:
            write_rows(conn, t, list(self.new.values()))
        if self.deltas:
            stmt = (update(t).where(t.c[k] == bindparam("_key"))
                    .values({c: t.c[c] + bindparam("_d_" + c) for c in self.counters}))
            conn.execute(stmt, [{"_key": key, **{"_d_" + c: v for c, v in d.items()}}
                                for key, d in self.deltas.items()])
        groups: dict[tuple, list[dict]] = {}
        for key, values in self.sets.items():
            groups.setdefault(tuple(sorted(values)), []).append(
                {"_key": key, **{"_s_" + c: v for c, v in values.items()}})
        for cols, rows in groups.items():
            stmt = update(t).where(t.c[k] == bindparam("_key")).values({c: bindparam("_s_" + c) for c in cols})
            conn.execute(stmt, rows)


class _Range:
    """Everything one block range writes, gathered before the transaction."""

    def __init__(self):
        self.rows: dict[Table, list] = {}
        self.plays: list[tuple] = []
        self.works = _Keyed(Work.__table__, "work_id", ("plays", "licensed_plays", "accrued", "distributed"))
        self.licensees = _Keyed(Licensee.__table__, "licensee_index",
                                ("escrow_deposited", "escrow_withdrawn", "escrow_charged"))
        self.devices = _Keyed(Device.__table__, "device_id", ())
        self.licenses: dict[tuple[str, int, int], dict] = {}
        self.stats: dict[tuple[int, int, str], list[int]] = {}  # plays, licensed, play_gross, fee_gross
        self.payees: dict[str, list[int]] = {}  # credited, withdrawn
        self.events = 0

    def add(self, table: Table, row: dict) -> None:
        self.rows.setdefault(table, []).append(row)

    def stat(self, work_id: int, period: int, territory: str, plays=0, licensed=0, play_gross=0, fee_gross=0):
        s = self.stats.get((work_id, period, territory))
        if s is None:
            s = self.stats[(work_id, period, territory)] = [0, 0, 0, 0]
        s[0] += plays
        s[1] += licensed
        s[2] += play_gross
        s[3] += fee_gross

    def payee(self, address: str, credited=0, withdrawn=0):
        p = self.payees.setdefault(address, [0, 0])
        p[0] += credited
        p[1] += withdrawn


# ----------------------------------------------------------------------------- indexer

class Indexer:
    """Follows the deployment's events into the database at ``engine`` (migrated to head)."""

    def __init__(self, engine: Engine, w3: Web3, deployment: Deployment, *, confirmations: int = 0,
                 block_range: int = 2000, progress: Optional[bool] = None):
        self.engine = engine
        self.w3 = w3
        self.deployment = deployment
        self.confirmations = confirmations
        self.block_range = max(1, block_range)
        self.progress = progress
        self.decoder: EventDecoder = deployment.event_decoder()
        self._state: Optional[_State] = None
        self._timestamps: dict[int, int] = {}
        self.ledger_address = deployment.ledger.address
        self._ledger_topic = "0x" + bytes(12).hex() + self.ledger_address[2:].lower()
        self._transfer_topic = self.decoder.topic("Token", "Transfer")
        self._handlers: dict[tuple[str, str], Callable[[DecodedEvent, _Range, int, int], None]] = {
            ("WorkRegistry", "WorkRegistered"): self._work_registered,
            ("WorkRegistry", "WorkURIUpdated"): self._work_uri_updated,
            ("WorkRegistry", "Transfer"): self._work_transfer,
            ("RoyaltyLedger", "SplitSet"): self._split_set,
            ("RoyaltyLedger", "SplitLocked"): self._split_locked,
            ("RoyaltyLedger", "Distributed"): self._distributed,
            ("RoyaltyLedger", "Withdrawn"): self._withdrawn,
            ("RoyaltyLedger", "TermsSet"): self._terms_set,
            ("RoyaltyLedger", "LicenseeRegistered"): self._licensee_registered,
            ("RoyaltyLedger", "LicenseBought"): self._license_bought,
            ("RoyaltyLedger", "EscrowDeposited"): self._escrow_deposited,
            ("RoyaltyLedger", "EscrowWithdrawn"): self._escrow_withdrawn,
            ("RoyaltyLedger", "DeviceRegistered"): self._device_registered,
            ("RoyaltyLedger", "DeviceRevoked"): self._device_revoked,
            ("RoyaltyLedger", "PlaysRecorded"): self._plays_recorded,
            ("RoyaltyLedger", "BatchSkipped"): self._batch_skipped,
            ("Token", "Transfer"): self._token_transfer,
        }

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self) -> Optional[IndexerCheckpoint]:
        with self.engine.connect() as conn:
            row = conn.execute(select(IndexerCheckpoint).where(IndexerCheckpoint.id == CHECKPOINT_ID)).first()
        return row[0] if row else None

    def _ensure_checkpoint(self) -> int:
        """The last indexed block, creating the checkpoint (deploy block - 1) on first use."""
        t = IndexerCheckpoint.__table__
        with self.engine.begin() as conn:
            row = conn.execute(select(t).where(t.c.id == CHECKPOINT_ID)).first()
            if row is None:
                conn.execute(insert(t).values(id=CHECKPOINT_ID, chain_id=self.deployment.chain_id,
                                              ledger_address=self.ledger_address,
                                              deploy_block=self.deployment.deploy_block,
                                              block_number=self.deployment.deploy_block - 1, block_hash=None,
                                              updated_at=int(time.time())))
                return self.deployment.deploy_block - 1
        if row.ledger_address != self.ledger_address or row.chain_id != self.deployment.chain_id:
            raise IndexerError(f"the index holds chain {row.chain_id} ledger {row.ledger_address}, not chain "
                               f"{self.deployment.chain_id} ledger {self.ledger_address}: use `ledger index --rebuild`")
        if row.block_hash is not None:
            block = self.w3.eth.get_block(row.block_number)
            if "0x" + bytes(block["hash"]).hex() != row.block_hash:
                raise ReorgDetectedError(f"block {row.block_number} at the checkpoint is no longer on the chain "
                                         "(reorg deeper than the confirmations, or a reset devnet): "
                                         "use `ledger index --rebuild`")
        return row.block_number

    def reset(self) -> None:
        """Empties every indexed table and the checkpoint, in one transaction."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("TRUNCATE " + ", ".join(t.name for t in INDEXED_TABLES)))
            else:
                for table in INDEXED_TABLES:
                    conn.execute(delete(table))
        self._state = None
        self._timestamps.clear()

    # ------------------------------------------------------------------ running
    def head(self) -> int:
        return self.w3.eth.block_number - self.confirmations

    def run(self, to_block: Optional[int] = None, rebuild: bool = False) -> IndexStats:
        """Indexes from the checkpoint to `to_block` (default: head - confirmations)."""
        started = time.monotonic()
        if rebuild:
            self.reset()
        last = self._ensure_checkpoint()
        target = self.head() if to_block is None else min(to_block, self.head())
        stats = IndexStats(from_block=last + 1, to_block=target)
        if target <= last:
            stats.to_block = last
            return stats
        bar = self._progress_bar(target - last)
        try:
            start = last + 1
            while start <= target:
                end = min(start + self.block_range - 1, target)
                events, plays, end = self._index_range(start, end)
                stats.ranges += 1
                stats.events += events
                stats.plays_rows += plays
                if bar is not None:
                    bar.update(end - start + 1)
                    bar.set_postfix(events=stats.events, plays=stats.plays_rows, refresh=False)
                start = end + 1
        finally:
            if bar is not None:
                bar.close()
        stats.seconds = time.monotonic() - started
        return stats

    def follow(self, poll_interval: float = 2.0, should_stop: Callable[[], bool] = lambda: False,
               on_stats: Callable[[IndexStats], None] | None = None) -> None:
        """Indexes new blocks as they come, until should_stop() (or KeyboardInterrupt)."""
        while not should_stop():
            stats = self.run()
            if on_stats is not None and stats.ranges:
                on_stats(stats)
            time.sleep(poll_interval)

    def _progress_bar(self, blocks: int):
        show = self.progress
        if show is None:
            import sys

            show = sys.stderr.isatty() and blocks > 5 * self.block_range
        if not show:
            return None
        from tqdm import tqdm

        return tqdm(total=blocks, unit="block", desc="indexing", dynamic_ncols=True)

    # ------------------------------------------------------------------ one range
    def _fetch_logs(self, start: int, end: int) -> list:
        contract_logs = self.w3.eth.get_logs({"fromBlock": start, "toBlock": end,
                                              "address": [self.deployment.works.address, self.ledger_address]})
        token = self.deployment.token.address
        token_in = self.w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": token,
                                         "topics": [self._transfer_topic, None, self._ledger_topic]})
        token_out = self.w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": token,
                                          "topics": [self._transfer_topic, self._ledger_topic]})
        seen = set()
        logs = []
        for entry in list(contract_logs) + list(token_in) + list(token_out):
            key = (entry["blockNumber"], entry["logIndex"])
            if key not in seen:  # a transfer from the ledger to itself matches both filters
                seen.add(key)
                logs.append(entry)
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        return logs

    def _get_logs_adaptive(self, start: int, end: int) -> tuple[list, int]:
        """Logs of [start, end]; halves the range when the node refuses (too many results)."""
        while True:
            try:
                return self._fetch_logs(start, end), end
            except Exception as exc:  # nodes differ in how they refuse: error codes, messages, timeouts
                if end == start or not _looks_like_too_many(exc):
                    raise
                end = start + (end - start) // 2
                log.info("node refused logs of %d blocks, retrying with %d", end - start + 1, end - start + 1)

    def _block_times(self, numbers: Iterable[int]) -> None:
        missing = sorted(n for n in set(numbers) if n not in self._timestamps)
        for i in range(0, len(missing), 200):
            chunk = missing[i:i + 200]
            try:
                with self.w3.batch_requests() as batch:
                    for n in chunk:
                        batch.add(self.w3.eth.get_block(n))
                    blocks = batch.execute()
            except Exception:  # a node without JSON-RPC batches
                blocks = [self.w3.eth.get_block(n) for n in chunk]
            for n, block in zip(chunk, blocks):
                self._timestamps[n] = int(block["timestamp"])
        if len(self._timestamps) > 100_000:
            self._timestamps.clear()

    def _index_range(self, start: int, end: int) -> tuple[int, int, int]:
        logs, end = self._get_logs_adaptive(start, end)
        end_block = self.w3.eth.get_block(end)
        end_hash = "0x" + bytes(end_block["hash"]).hex()
        self._block_times(e["blockNumber"] for e in logs)
        if self._state is None:
            with self.engine.connect() as conn:
                self._state = _State.load(conn)
        batch = _Range()
        try:
            for entry in logs:
                event = self.decoder.decode(entry)
                if event is None:
                    continue
                handler = self._handlers.get((event.contract, event.name))
                if handler is None:
                    continue
                ts = self._timestamps[event.block_number]
                handler(event, batch, ts, period_of(ts))
                batch.events += 1
            self._write(batch, start, end, end_hash)
        except BaseException:
            self._state = None  # it may hold changes of the range that was not written
            raise
        return batch.events, len(batch.plays), end

    def _write(self, batch: _Range, start: int, end: int, end_hash: str) -> None:
        cp = IndexerCheckpoint.__table__
        with self.engine.begin() as conn:
            query = select(cp.c.block_number).where(cp.c.id == CHECKPOINT_ID)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            current = conn.execute(query).scalar_one()
            if current != start - 1:
                raise IndexerError(f"the checkpoint moved to {current} while indexing from {start}: "
                                   "is another indexer running on this database?")
            batch.works.flush(conn, self._write_rows)
            batch.licensees.flush(conn, self._write_rows)
            batch.devices.flush(conn, self._write_rows)
            for table, rows in batch.rows.items():
                self._write_rows(conn, table, rows)
            if batch.plays:
                self._write_plays(conn, batch.plays)
            self._upsert_licenses(conn, batch.licenses)
            self._upsert(conn, WorkPeriodStats.__table__, ["work_id", "period", "territory"],
                         ["plays", "licensed_plays", "play_gross", "fee_gross"],
                         [{"work_id": w, "period": p, "territory": t, "plays": s[0], "licensed_plays": s[1],
                           "play_gross": s[2], "fee_gross": s[3]} for (w, p, t), s in batch.stats.items()])
            self._upsert(conn, Payee.__table__, ["address"], ["credited", "withdrawn"],
                         [{"address": a, "credited": c, "withdrawn": w} for a, (c, w) in batch.payees.items()])
            conn.execute(update(cp).where(cp.c.id == CHECKPOINT_ID)
                         .values(block_number=end, block_hash=end_hash, updated_at=int(time.time())))

    # ------------------------------------------------------------------ bulk writers
    def _write_rows(self, conn, table: Table, rows: list[dict]) -> None:
        """Bulk insert (one executemany). Tests wrap this to inject failures."""
        if rows:
            conn.execute(insert(table), rows)

    def _write_plays(self, conn, rows: list[tuple]) -> None:
        """Play rows: COPY on PostgreSQL, executemany elsewhere."""
        if conn.dialect.name == "postgresql":
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                with cur.copy(f"COPY plays ({', '.join(PLAY_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in PLAY_COLUMNS)
            conn.exec_driver_sql(f"INSERT INTO plays ({', '.join(PLAY_COLUMNS)}) VALUES ({marks})", rows)

    def _insert_for(self, conn, table: Table):
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif conn.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            raise IndexerError(f"unsupported database {conn.dialect.name}: use SQLite or PostgreSQL")
        return dialect_insert(table)

    def _upsert(self, conn, table: Table, keys: list[str], counters: list[str], rows: list[dict]) -> None:
        if not rows:
            return
        stmt = self._insert_for(conn, table)
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={c: table.c[c] + stmt.excluded[c] for c in counters})
        conn.execute(stmt, rows)

    def _upsert_licenses(self, conn, licenses: dict) -> None:
        if not licenses:
            return
        t = License.__table__
        stmt = self._insert_for(conn, t)
        stmt = stmt.on_conflict_do_update(
            index_elements=["licensee", "work_id", "kind"],
            set_={"rate_per_play": stmt.excluded.rate_per_play, "expiry": stmt.excluded.expiry,
                  "updated_block": stmt.excluded.updated_block, "fees_paid": t.c.fees_paid + stmt.excluded.fees_paid})
        conn.execute(stmt, list(licenses.values()))

    # ------------------------------------------------------------------ event handlers
    @staticmethod
    def _base(event: DecodedEvent, ts: int) -> dict:
        return {"block_number": event.block_number, "log_index": event.log_index, "tx_hash": event.tx_hash,
                "timestamp": ts}

    def _work_registered(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        work_id, uri = e.args["workId"], e.args["uri"]
        meta = parse_metadata_uri(uri)
        r.works.insert(work_id, {"owner": e.args["owner"], "registrant": e.args["owner"],
                                 "isrc": isrc_from_bytes12(e.args["isrc"]), "iswc": meta.iswc, "title": meta.title,
                                 "uri": uri, "registered_block": e.block_number, "registered_at": ts,
                                 "split_locked": False})
        self._state.works.add(work_id)

    def _require_work(self, work_id: int, e: DecodedEvent) -> None:
        if work_id not in self._state.works:
            raise InconsistentEventError(f"{e.name} at block {e.block_number} log {e.log_index} names work "
                                         f"{work_id}, which was never registered")

    def _work_uri_updated(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        work_id, uri = e.args["workId"], e.args["uri"]
        self._require_work(work_id, e)
        meta = parse_metadata_uri(uri)
        r.works.set(work_id, uri=uri, title=meta.title, iswc=meta.iswc)
        r.add(WorkUriUpdate.__table__, {**self._base(e, ts), "work_id": work_id, "uri": uri})

    def _work_transfer(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        work_id = e.args["tokenId"]
        r.add(WorkTransfer.__table__, {**self._base(e, ts), "work_id": work_id, "from_address": e.args["from"],
                                       "to_address": e.args["to"]})
        if e.args["from"] != ZERO_ADDRESS and work_id in self._state.works:  # the mint is WorkRegistered's
            r.works.set(work_id, owner=e.args["to"])

    def _split_set(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        work_id, payees, bps = e.args["workId"], list(e.args["payees"]), list(e.args["bps"])
        self._require_work(work_id, e)
        if not payees or len(payees) != len(bps) or sum(bps) != 10_000:
            raise InconsistentEventError(f"SplitSet at block {e.block_number} is not a valid split")
        base = self._base(e, ts)
        for position, (payee, share) in enumerate(zip(payees, bps)):
            r.add(SplitShare.__table__, {**base, "work_id": work_id, "position": position, "payee": payee,
                                         "bps": share})
        self._state.splits[work_id] = (payees, bps)

    def _split_locked(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        r.works.set(e.args["workId"], split_locked=True)

    def _distributed(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        work_id, amount = e.args["workId"], e.args["amount"]
        split = self._state.splits.get(work_id)
        if split is None:
            raise InconsistentEventError(f"Distributed for work {work_id} at block {e.block_number} before any SplitSet")
        payees, bps = split
        base = self._base(e, ts)
        r.add(Distribution.__table__, {**base, "work_id": work_id, "amount": amount, "period": period})
        for position, (payee, share, part) in enumerate(zip(payees, bps, split_shares(amount, bps))):
            r.add(PayeeCredit.__table__, {**base, "work_id": work_id, "position": position, "payee": payee,
                                          "bps": share, "amount": part, "period": period})
            r.payee(payee, credited=part)
        r.works.add(work_id, distributed=amount)

    def _withdrawn(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        r.add(Withdrawal.__table__, {**self._base(e, ts), "payee": e.args["payee"], "to_address": e.args["to"],
                                     "amount": e.args["amount"]})
        r.payee(e.args["payee"], withdrawn=e.args["amount"])

    def _terms_set(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        r.add(Terms.__table__, {**self._base(e, ts), "work_id": e.args["workId"], "kind": e.args["kind"],
                                "fee": e.args["fee"], "rate_per_play": e.args["ratePerPlay"],
                                "duration": e.args["duration"], "offered": e.args["offered"]})

    def _licensee_registered(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        index, address = e.args["licenseeIndex"], e.args["licensee"]
        r.licensees.insert(index, {"address": address, "registered_block": e.block_number})
        self._state.licensee_by_index[index] = address
        self._state.index_by_licensee[address] = index

    def _licensee_index(self, address: str, e: DecodedEvent) -> int:
        index = self._state.index_by_licensee.get(address)
        if index is None:
            raise InconsistentEventError(f"{e.name} at block {e.block_number} names {address}, "
                                         "which has no LicenseeRegistered before it")
        return index

    def _license_bought(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        a = e.args
        licensee, work_id, kind, fee = a["licensee"], a["workId"], a["kind"], a["fee"]
        self._require_work(work_id, e)
        r.add(LicensePurchase.__table__, {**self._base(e, ts), "licensee": licensee, "work_id": work_id,
                                          "kind": kind, "fee": fee, "rate_per_play": a["ratePerPlay"],
                                          "expiry": a["expiry"], "period": period})
        key = (licensee, work_id, kind)
        current = r.licenses.get(key)
        r.licenses[key] = {"licensee": licensee, "work_id": work_id, "kind": kind, "rate_per_play": a["ratePerPlay"],
                           "expiry": a["expiry"], "updated_block": e.block_number,
                           "fees_paid": fee + (current["fees_paid"] if current else 0)}
        if kind == int(LicenseKind.METERED):
            self._state.metered[(licensee, work_id)] = (a["ratePerPlay"], a["expiry"])
        if fee:
            r.works.add(work_id, accrued=fee)
            r.stat(work_id, period, "", fee_gross=fee)

    def _escrow_deposited(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        a = e.args
        r.add(EscrowMovement.__table__, {**self._base(e, ts), "licensee": a["licensee"], "counterparty": a["from"],
                                         "direction": "deposit", "amount": a["amount"]})
        r.licensees.add(self._licensee_index(a["licensee"], e), escrow_deposited=a["amount"])

    def _escrow_withdrawn(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        a = e.args
        r.add(EscrowMovement.__table__, {**self._base(e, ts), "licensee": a["licensee"], "counterparty": a["to"],
                                         "direction": "withdraw", "amount": a["amount"]})
        r.licensees.add(self._licensee_index(a["licensee"], e), escrow_withdrawn=a["amount"])

    def _device_registered(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        a = e.args
        territory = bytes(a["territory"]).decode("ascii", "replace")
        r.devices.insert(a["deviceId"], {"address": a["device"], "licensee": a["licensee"], "territory": territory,
                                         "registered_block": e.block_number, "registered_at": ts, "revoked": False,
                                         "revoked_block": None})
        self._state.territory[a["deviceId"]] = territory

    def _device_revoked(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        r.devices.set(e.args["deviceId"], revoked=True, revoked_block=e.block_number)

    def _batch_skipped(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        reason = e.args["reason"]
        r.add(BatchSkip.__table__, {**self._base(e, ts), "device_id": e.args["deviceId"], "nonce": e.args["nonce"],
                                    "reason": SKIP_REASONS[reason] if reason < len(SKIP_REASONS) else str(reason)})

    def _token_transfer(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        r.add(TokenTransfer.__table__, {**self._base(e, ts), "from_address": e.args["from"],
                                        "to_address": e.args["to"], "amount": e.args["value"]})

    def _plays_recorded(self, e: DecodedEvent, r: _Range, ts: int, period: int) -> None:
        state = self._state
        block, log_index = e.block_number, e.log_index
        plays = r.plays
        stat = r.stat
        for batch_index, record in enumerate(decode_play_records(e.args["records"])):
            device_id = record.device_id
            licensee_index = device_id >> 32
            licensee = state.licensee_by_index.get(licensee_index)
            territory = state.territory.get(device_id)
            if licensee is None or territory is None:
                raise InconsistentEventError(f"PlaysRecorded at block {block} log {log_index} names device "
                                             f"{device_id}, which has no DeviceRegistered before it")
            to_time = record.to_time
            charged = total_plays = 0
            for work_id, count in record.entries:
                if work_id not in state.works:
                    raise InconsistentEventError(f"PlaysRecorded at block {block} names unregistered work {work_id}")
                lic = state.metered.get((licensee, work_id))
                if lic is not None and lic[1] >= to_time:
                    rate = lic[0]
                    amount = count * rate
                    charged += amount
                    plays.append((block, log_index, batch_index, work_id, device_id, count, True, rate, amount,
                                  territory, period))
                    stat(work_id, period, territory, plays=count, licensed=count, play_gross=amount)
                    r.works.add(work_id, plays=count, licensed_plays=count, accrued=amount)
                else:
                    plays.append((block, log_index, batch_index, work_id, device_id, count, False, 0, 0, territory,
                                  period))
                    stat(work_id, period, territory, plays=count)
                    r.works.add(work_id, plays=count)
                total_plays += count
            if charged != record.charged:
                raise InconsistentEventError(
                    f"PlaysRecorded at block {block} log {log_index} batch {batch_index} (device {device_id}, nonce "
                    f"{record.nonce}) says it charged {record.charged}, the licenses the index knows give {charged}")
            r.add(PlayBatch.__table__, {"block_number": block, "log_index": log_index, "tx_hash": e.tx_hash,
                                        "timestamp": ts, "batch_index": batch_index, "device_id": device_id,
                                        "licensee_index": licensee_index, "nonce": record.nonce,
                                        "from_time": record.from_time, "to_time": to_time, "charged": charged,
                                        "entries": len(record.entries), "plays": total_plays, "period": period})
            r.licensees.add(licensee_index, escrow_charged=charged)


def _looks_like_too_many(exc: Exception) -> bool:
    text_ = str(exc).lower()
    return any(s in text_ for s in ("too many", "limit", "exceed", "range", "timeout", "timed out", "size"))
