"""The event projection: decoded events -> the rows and counters one block range writes.

It owns what the index derives from events exactly as the chain does (split shares, licensed or
unlicensed plays, the charged-total check) and the in-memory :class:`State` that derivation needs
from earlier events. Pure Python: no database connection and no web3 here, so every handler can be
tested alone; the writer turns a :class:`RangeRows` into SQL and the facade loads the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table

from ..chain import LicenseKind
from ..errors import InconsistentEventError
from ..events import DecodedEvent
from ..metadata import isrc_from_bytes12, parse_metadata_uri
from ..models import (
    Base,
    BatchSkip,
    Device,
    Distribution,
    EscrowMovement,
    IndexAnomaly,
    Licensee,
    LicensePurchase,
    PayeeCredit,
    PlayBatch,
    SplitShare,
    Terms,
    TokenTransfer,
    Withdrawal,
    Work,
    WorkTransfer,
    WorkUriUpdate,
)
from ..playbatch import SKIP_REASONS, decode_play_records, split_shares

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

Row = dict[str, Any]
#: A row of ``plays``, in the order of ``writer.PLAY_COLUMNS``: block_number, log_index, batch_index, work_id,
#: device_id, count, licensed, rate, amount, territory, period.
PlayRow = tuple[int, int, int, int, int, int, bool, int, int, str, int]


def table_of(model: type[Base]) -> Table:
    """The Table a model class maps (SQLAlchemy types ``__table__`` as any FromClause)."""
    return cast(Table, model.__table__)


BATCH_SKIPS = table_of(BatchSkip)
DEVICES = table_of(Device)
DISTRIBUTIONS = table_of(Distribution)
ESCROW_MOVEMENTS = table_of(EscrowMovement)
LICENSEES = table_of(Licensee)
LICENSE_PURCHASES = table_of(LicensePurchase)
PAYEE_CREDITS = table_of(PayeeCredit)
PLAY_BATCHES = table_of(PlayBatch)
SPLIT_SHARES = table_of(SplitShare)
TERMS = table_of(Terms)
TOKEN_TRANSFERS = table_of(TokenTransfer)
WITHDRAWALS = table_of(Withdrawal)
WORKS = table_of(Work)
WORK_TRANSFERS = table_of(WorkTransfer)
WORK_URI_UPDATES = table_of(WorkUriUpdate)
ANOMALIES = table_of(IndexAnomaly)

log = logging.getLogger("ledger.indexer")


def metered_rate(periods: tuple[int, int, int, int] | None, to_time: int) -> int | None:
    """The rate a METERED license charges a batch ending at ``to_time`` (None: not licensed): the
    period the batch ended in decides, the previous one first (as the contract does)."""
    if periods is None:
        return None
    rate, expiry, prev_rate, prev_expiry = periods
    if to_time <= prev_expiry:
        return prev_rate
    if to_time <= expiry:
        return rate
    return None


def period_of(timestamp: int) -> int:
    """UTC month of a unix time as YYYYMM."""
    d = datetime.fromtimestamp(timestamp, tz=UTC)
    return d.year * 100 + d.month


@dataclass
class State:
    """What decoding needs from earlier events, loaded from the index and advanced per event."""

    splits: dict[int, tuple[list[str], list[int]]] = field(default_factory=dict)
    licensee_by_index: dict[int, str] = field(default_factory=dict)
    index_by_licensee: dict[str, int] = field(default_factory=dict)
    #: (licensee, work) -> (rate, expiry, previous period's rate, previous period's expiry)
    metered: dict[tuple[str, int], tuple[int, int, int, int]] = field(default_factory=dict)
    territory: dict[int, str] = field(default_factory=dict)  # device id -> territory
    works: set[int] = field(default_factory=set)


class KeyedRows:
    """Rows of a keyed table touched by a range: new rows, counter deltas and plain updates."""

    def __init__(self, table: Table, key: str, counters: Iterable[str]) -> None:
        self.table, self.key, self.counters = table, key, tuple(counters)
        self.new: dict[Any, Row] = {}
        self.deltas: dict[Any, dict[str, int]] = {}
        self.sets: dict[Any, dict[str, Any]] = {}

    def insert(self, key: Any, row: Row) -> None:
        for c in self.counters:
            row.setdefault(c, 0)
        row[self.key] = key
        self.new[key] = row

    def add(self, key: Any, **amounts: int) -> None:
        row = self.new.get(key)
        if row is None:
            row = self.deltas.setdefault(key, dict.fromkeys(self.counters, 0))
        for c, v in amounts.items():
            row[c] += v

    def set(self, key: Any, **values: Any) -> None:
        row = self.new.get(key)
        if row is not None:
            row.update(values)
        else:
            self.sets.setdefault(key, {}).update(values)


class RangeRows:
    """Everything one block range writes, gathered before the transaction."""

    def __init__(self) -> None:
        self.rows: dict[Table, list[Row]] = {}
        self.plays: list[PlayRow] = []
        self.works = KeyedRows(WORKS, "work_id", ("plays", "licensed_plays", "accrued", "distributed"))
        self.licensees = KeyedRows(
            LICENSEES, "licensee_index", ("escrow_deposited", "escrow_withdrawn", "escrow_charged")
        )
        self.devices = KeyedRows(DEVICES, "device_id", ())
        self.licenses: dict[tuple[str, int, int], Row] = {}
        self.stats: dict[tuple[int, int, str], list[int]] = {}  # plays, licensed, play_gross, fee_gross
        self.payees: dict[str, list[int]] = {}  # credited, withdrawn
        self.events = 0

    def add(self, table: Table, row: Row) -> None:
        self.rows.setdefault(table, []).append(row)

    def stat(
        self,
        work_id: int,
        period: int,
        territory: str,
        plays: int = 0,
        licensed: int = 0,
        play_gross: int = 0,
        fee_gross: int = 0,
    ) -> None:
        s = self.stats.get((work_id, period, territory))
        if s is None:
            s = self.stats[(work_id, period, territory)] = [0, 0, 0, 0]
        s[0] += plays
        s[1] += licensed
        s[2] += play_gross
        s[3] += fee_gross

    def payee(self, address: str, credited: int = 0, withdrawn: int = 0) -> None:
        p = self.payees.setdefault(address, [0, 0])
        p[0] += credited
        p[1] += withdrawn


Handler = Callable[[DecodedEvent, RangeRows, int, int], None]


def _base(event: DecodedEvent, ts: int) -> Row:
    return {"block_number": event.block_number, "log_index": event.log_index, "tx_hash": event.tx_hash, "timestamp": ts}


class Projection:
    """Applies decoded events to a :class:`RangeRows`, advancing ``state`` as the chain did."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._handlers: dict[tuple[str, str], Handler] = {
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

    def handler(self, event: DecodedEvent) -> Handler | None:
        """The handler of ``event``, or None for an event the index does not keep.

        A handler is called as ``handler(event, rows, ts, period_of(ts))`` with the unix time of the event's block.
        """
        return self._handlers.get((event.contract, event.name))

    def project(
        self, events: Iterable[DecodedEvent | None], timestamps: Mapping[int, int], rows: RangeRows | None = None
    ) -> RangeRows:
        """Applies ``events`` (in chain order; None and events the index does not keep are passed
        over) to ``rows`` (default: a new :class:`RangeRows`); ``timestamps`` maps block numbers to
        unix times. What the indexer does with each range it reads."""
        rows = RangeRows() if rows is None else rows
        handlers = self._handlers
        periods: dict[int, int] = {}
        for event in events:
            if event is None:
                continue
            handler = handlers.get((event.contract, event.name))
            if handler is None:
                continue
            ts = timestamps[event.block_number]
            period = periods.get(ts)
            if period is None:
                period = periods[ts] = period_of(ts)
            handler(event, rows, ts, period)
            rows.events += 1
        return rows

    # ------------------------------------------------------------------ checks shared by handlers
    def _require_work(self, work_id: int, e: DecodedEvent) -> None:
        if work_id not in self.state.works:
            raise InconsistentEventError(
                f"{e.name} at block {e.block_number} log {e.log_index} names work {work_id}, which was never registered"
            )

    def _licensee_index(self, address: str, e: DecodedEvent) -> int:
        index = self.state.index_by_licensee.get(address)
        if index is None:
            raise InconsistentEventError(
                f"{e.name} at block {e.block_number} names {address}, which has no LicenseeRegistered before it"
            )
        return index

    # ------------------------------------------------------------------ works and splits
    def _work_registered(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        work_id, uri = e.args["workId"], e.args["uri"]
        meta = parse_metadata_uri(uri)
        r.works.insert(
            work_id,
            {
                "owner": e.args["owner"],
                "registrant": e.args["owner"],
                "isrc": isrc_from_bytes12(e.args["isrc"]),
                "iswc": meta.iswc,
                "title": meta.title,
                "uri": uri,
                "registered_uri": uri,
                "registered_block": e.block_number,
                "registered_at": ts,
                "split_locked": False,
                "split_locked_block": None,
            },
        )
        self.state.works.add(work_id)

    def _work_uri_updated(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        work_id, uri = e.args["workId"], e.args["uri"]
        self._require_work(work_id, e)
        meta = parse_metadata_uri(uri)
        r.works.set(work_id, uri=uri, title=meta.title, iswc=meta.iswc)
        r.add(WORK_URI_UPDATES, {**_base(e, ts), "work_id": work_id, "uri": uri})

    def _work_transfer(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        work_id = e.args["tokenId"]
        r.add(
            WORK_TRANSFERS,
            {**_base(e, ts), "work_id": work_id, "from_address": e.args["from"], "to_address": e.args["to"]},
        )
        if e.args["from"] != ZERO_ADDRESS and work_id in self.state.works:  # the mint is WorkRegistered's
            r.works.set(work_id, owner=e.args["to"])

    def _split_set(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        work_id, payees, bps = e.args["workId"], list(e.args["payees"]), list(e.args["bps"])
        self._require_work(work_id, e)
        if not payees or len(payees) != len(bps) or sum(bps) != 10_000:
            raise InconsistentEventError(f"SplitSet at block {e.block_number} is not a valid split")
        base = _base(e, ts)
        for position, (payee, share) in enumerate(zip(payees, bps, strict=True)):
            r.add(SPLIT_SHARES, {**base, "work_id": work_id, "position": position, "payee": payee, "bps": share})
        self.state.splits[work_id] = (payees, bps)

    def _split_locked(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        r.works.set(e.args["workId"], split_locked=True, split_locked_block=e.block_number)

    # ------------------------------------------------------------------ payouts
    def _distributed(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        work_id, amount = e.args["workId"], e.args["amount"]
        split = self.state.splits.get(work_id)
        if split is None:
            raise InconsistentEventError(
                f"Distributed for work {work_id} at block {e.block_number} before any SplitSet"
            )
        payees, bps = split
        base = _base(e, ts)
        r.add(DISTRIBUTIONS, {**base, "work_id": work_id, "amount": amount, "period": period})
        for position, (payee, share, part) in enumerate(zip(payees, bps, split_shares(amount, bps), strict=True)):
            r.add(
                PAYEE_CREDITS,
                {
                    **base,
                    "work_id": work_id,
                    "position": position,
                    "payee": payee,
                    "bps": share,
                    "amount": part,
                    "period": period,
                },
            )
            r.payee(payee, credited=part)
        r.works.add(work_id, distributed=amount)

    def _withdrawn(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        r.add(
            WITHDRAWALS,
            {**_base(e, ts), "payee": e.args["payee"], "to_address": e.args["to"], "amount": e.args["amount"]},
        )
        r.payee(e.args["payee"], withdrawn=e.args["amount"])

    # ------------------------------------------------------------------ terms, licensees, licenses, escrow
    def _terms_set(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        r.add(
            TERMS,
            {
                **_base(e, ts),
                "work_id": e.args["workId"],
                "kind": e.args["kind"],
                "fee": e.args["fee"],
                "rate_per_play": e.args["ratePerPlay"],
                "duration": e.args["duration"],
                "offered": e.args["offered"],
            },
        )

    def _licensee_registered(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        index, address = e.args["licenseeIndex"], e.args["licensee"]
        r.licensees.insert(index, {"address": address, "registered_block": e.block_number})
        self.state.licensee_by_index[index] = address
        self.state.index_by_licensee[address] = index

    def _license_bought(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        a = e.args
        licensee, work_id, kind, fee = a["licensee"], a["workId"], a["kind"], a["fee"]
        self._require_work(work_id, e)
        r.add(
            LICENSE_PURCHASES,
            {
                **_base(e, ts),
                "licensee": licensee,
                "work_id": work_id,
                "kind": kind,
                "fee": fee,
                "rate_per_play": a["ratePerPlay"],
                "expiry": a["expiry"],
                "prev_rate_per_play": a["prevRate"],
                "prev_expiry": a["prevExpiry"],
                "period": period,
            },
        )
        key = (licensee, work_id, kind)
        current = r.licenses.get(key)
        r.licenses[key] = {
            "licensee": licensee,
            "work_id": work_id,
            "kind": kind,
            "rate_per_play": a["ratePerPlay"],
            "expiry": a["expiry"],
            "prev_rate_per_play": a["prevRate"],
            "prev_expiry": a["prevExpiry"],
            "updated_block": e.block_number,
            "fees_paid": fee + (current["fees_paid"] if current else 0),
        }
        if kind == int(LicenseKind.METERED):
            self.state.metered[(licensee, work_id)] = (a["ratePerPlay"], a["expiry"], a["prevRate"], a["prevExpiry"])
        if fee:
            r.works.add(work_id, accrued=fee)
            r.stat(work_id, period, "", fee_gross=fee)

    def _escrow_deposited(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        a = e.args
        r.add(
            ESCROW_MOVEMENTS,
            {
                **_base(e, ts),
                "licensee": a["licensee"],
                "counterparty": a["from"],
                "direction": "deposit",
                "amount": a["amount"],
            },
        )
        r.licensees.add(self._licensee_index(a["licensee"], e), escrow_deposited=a["amount"])

    def _escrow_withdrawn(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        a = e.args
        r.add(
            ESCROW_MOVEMENTS,
            {
                **_base(e, ts),
                "licensee": a["licensee"],
                "counterparty": a["to"],
                "direction": "withdraw",
                "amount": a["amount"],
            },
        )
        r.licensees.add(self._licensee_index(a["licensee"], e), escrow_withdrawn=a["amount"])

    # ------------------------------------------------------------------ devices and plays
    def _device_registered(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        a = e.args
        territory = bytes(a["territory"]).decode("ascii", "replace")
        r.devices.insert(
            a["deviceId"],
            {
                "address": a["device"],
                "licensee": a["licensee"],
                "territory": territory,
                "registered_block": e.block_number,
                "registered_at": ts,
                "revoked": False,
                "revoked_block": None,
                "revoked_at": None,
            },
        )
        self.state.territory[a["deviceId"]] = territory

    def _device_revoked(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        r.devices.set(e.args["deviceId"], revoked=True, revoked_block=e.block_number, revoked_at=e.args["revokedAt"])

    def _batch_skipped(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        reason = e.args["reason"]
        r.add(
            BATCH_SKIPS,
            {
                **_base(e, ts),
                "device_id": e.args["deviceId"],
                "nonce": e.args["nonce"],
                "reason": SKIP_REASONS[reason] if reason < len(SKIP_REASONS) else str(reason),
            },
        )

    def _token_transfer(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        r.add(
            TOKEN_TRANSFERS,
            {**_base(e, ts), "from_address": e.args["from"], "to_address": e.args["to"], "amount": e.args["value"]},
        )

    def _plays_recorded(self, e: DecodedEvent, r: RangeRows, ts: int, period: int) -> None:
        state = self.state
        block, log_index = e.block_number, e.log_index
        plays = r.plays
        stats = r.stats
        metered = state.metered
        works = state.works
        # per work: plays, licensed plays, accrued in this event; added to the works' counters once
        # per work at the end (the hot loop runs once per entry: no calls it can do without)
        per_work: dict[int, list[int]] = {}
        for batch_index, record in enumerate(decode_play_records(e.args["records"])):
            device_id = record.device_id
            licensee_index = device_id >> 32
            licensee = state.licensee_by_index.get(licensee_index)
            territory = state.territory.get(device_id)
            if licensee is None or territory is None:
                raise InconsistentEventError(
                    f"PlaysRecorded at block {block} log {log_index} names device "
                    f"{device_id}, which has no DeviceRegistered before it"
                )
            to_time = record.to_time
            charged = total_plays = 0
            for work_id, count in record.entries:
                if work_id not in works:
                    # The contract applies a batch naming a work id nobody registered (it can earn
                    # nothing: no license exists for it). Record it, and go on.
                    r.add(
                        ANOMALIES,
                        {
                            "block_number": block,
                            "log_index": log_index,
                            "tx_hash": e.tx_hash,
                            "kind": "PlaysOfUnknownWork",
                            "detail": f"batch {batch_index} (device {device_id}, nonce {record.nonce}): "
                            f"{count} plays of work {work_id}, which is not registered",
                        },
                    )
                    log.warning(
                        "indexer: block %d log %d: %d plays of unregistered work %d (recorded as an anomaly)",
                        block,
                        log_index,
                        count,
                        work_id,
                    )
                    continue
                m = metered.get((licensee, work_id))  # metered_rate(m, to_time), inlined: once per entry
                if m is None:
                    rate = None
                elif to_time <= m[3]:
                    rate = m[2]
                elif to_time <= m[1]:
                    rate = m[0]
                else:
                    rate = None
                key = (work_id, period, territory)
                s = stats.get(key)
                if s is None:
                    s = stats[key] = [0, 0, 0, 0]
                w = per_work.get(work_id)
                if w is None:
                    w = per_work[work_id] = [0, 0, 0]
                s[0] += count
                w[0] += count
                if rate is not None:
                    amount = count * rate
                    charged += amount
                    plays.append(
                        (
                            block,
                            log_index,
                            batch_index,
                            work_id,
                            device_id,
                            count,
                            True,
                            rate,
                            amount,
                            territory,
                            period,
                        )
                    )
                    s[1] += count
                    s[2] += amount
                    w[1] += count
                    w[2] += amount
                else:
                    plays.append(
                        (block, log_index, batch_index, work_id, device_id, count, False, 0, 0, territory, period)
                    )
                total_plays += count
            if charged != record.charged:
                raise InconsistentEventError(
                    f"PlaysRecorded at block {block} log {log_index} batch {batch_index} (device {device_id}, nonce "
                    f"{record.nonce}) says it charged {record.charged}, the licenses the index knows give {charged}"
                )
            r.add(
                PLAY_BATCHES,
                {
                    "block_number": block,
                    "log_index": log_index,
                    "tx_hash": e.tx_hash,
                    "timestamp": ts,
                    "batch_index": batch_index,
                    "device_id": device_id,
                    "licensee_index": licensee_index,
                    "nonce": record.nonce,
                    "from_time": record.from_time,
                    "to_time": to_time,
                    "charged": charged,
                    "entries": len(record.entries),
                    "plays": total_plays,
                    "period": period,
                },
            )
            r.licensees.add(licensee_index, escrow_charged=charged)
        for work_id, (n, licensed, accrued) in per_work.items():
            r.works.add(work_id, plays=n, licensed_plays=licensed, accrued=accrued)
