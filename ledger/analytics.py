"""Portal analytics from the index: plays and earnings by work, time and territory.

No listener data exists anywhere: the index holds plays per work, device and batch only. Two
rules keep devices (and so venues) from being singled out:

- **k-anonymity of territory cells**: a (period, territory) cell fed by fewer than ``k``
  distinct devices (default 3, setting ``LEDGER_K_ANONYMITY``) is merged into the territory
  ``"other"``. The totals of a period are unchanged by the merge.
- **device ids** are never part of these results; only a device's licensee sees them
  (licensee pages).

Earnings are token units (exact integers): play charges by block time of their batch, license
fees by block time of the purchase. Days are UTC days of the block time (``YYYY-MM-DD``), months
``YYYY-MM`` (the statements' periods).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, func, select

from .chain import LicenseKind, checksum
from .models import Device, License, LicensePurchase, Payee, Play, PlayBatch, SplitShare, Terms, Withdrawal, Work

OTHER = "other"
DAY = 86_400


def _month(period: int) -> str:
    return f"{period // 100:04d}-{period % 100:02d}"


def _day(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * DAY, tz=UTC).strftime("%Y-%m-%d")


# ----------------------------------------------------------------------------- works


@dataclass(frozen=True)
class WorkInfo:
    work_id: int
    title: str | None
    isrc: str | None
    iswc: str | None
    owner: str
    registered_at: int
    plays: int
    licensed_plays: int
    accrued: int
    distributed: int
    split_locked: bool

    @property
    def undistributed(self) -> int:
        return self.accrued - self.distributed


def _info(w: Work) -> WorkInfo:
    return WorkInfo(
        w.work_id,
        w.title,
        w.isrc,
        w.iswc,
        w.owner,
        w.registered_at,
        w.plays,
        w.licensed_plays,
        w.accrued,
        w.distributed,
        w.split_locked,
    )


def works_owned(engine: Engine, owner: str) -> list[WorkInfo]:
    owner = checksum(owner, "owner")
    with engine.connect() as conn:
        rows = conn.execute(select(Work).where(Work.owner == owner).order_by(Work.work_id)).all()
    return [_info(Work(**r._mapping)) for r in rows]


def payee_work_ids(engine: Engine, payee: str) -> list[int]:
    """Works where the address is or was a payee of a split."""
    payee = checksum(payee, "payee")
    with engine.connect() as conn:
        return sorted(conn.execute(select(SplitShare.work_id).where(SplitShare.payee == payee).distinct()).scalars())


def works_by_id(engine: Engine, work_ids: Iterable[int]) -> list[WorkInfo]:
    ids = sorted(set(work_ids))
    if not ids:
        return []
    with engine.connect() as conn:
        rows = conn.execute(select(Work).where(Work.work_id.in_(ids)).order_by(Work.work_id)).all()
    return [_info(Work(**r._mapping)) for r in rows]


def work(engine: Engine, work_id: int) -> WorkInfo | None:
    found = works_by_id(engine, [work_id])
    return found[0] if found else None


def work_by_isrc(engine: Engine, isrc: str) -> WorkInfo | None:
    with engine.connect() as conn:
        row = conn.execute(select(Work).where(Work.isrc == isrc)).one_or_none()
    return _info(Work(**row._mapping)) if row else None


def visible_work_ids(engine: Engine, address: str) -> list[int]:
    """Works an address may see: those it owns and those where it is or was a payee."""
    owned = {w.work_id for w in works_owned(engine, address)}
    return sorted(owned | set(payee_work_ids(engine, address)))


# ----------------------------------------------------------------------------- splits, terms, licensees


@dataclass(frozen=True)
class SplitVersion:
    block_number: int
    timestamp: int
    tx_hash: str
    shares: list[tuple[str, int]]


def split_history(engine: Engine, work_id: int) -> list[SplitVersion]:
    s = SplitShare.__table__
    versions: dict[tuple[int, int], SplitVersion] = {}
    with engine.connect() as conn:
        for r in conn.execute(
            select(s).where(s.c.work_id == work_id).order_by(s.c.block_number, s.c.log_index, s.c.position)
        ):
            key = (r.block_number, r.log_index)
            if key not in versions:
                versions[key] = SplitVersion(r.block_number, r.timestamp, r.tx_hash, [])
            versions[key].shares.append((r.payee, r.bps))
    return list(versions.values())


def current_terms(engine: Engine, work_id: int) -> dict[str, dict[str, Any]]:
    """{"FLAT"/"METERED": {fee, rate_per_play, duration, offered}} from the latest TermsSet."""
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for r in conn.execute(
            select(Terms.__table__).where(Terms.work_id == work_id).order_by(Terms.block_number, Terms.log_index)
        ):
            out[LicenseKind(r.kind).name] = {
                "fee": int(r.fee),
                "rate_per_play": int(r.rate_per_play),
                "duration": int(r.duration),
                "offered": bool(r.offered),
            }
    return out


@dataclass(frozen=True)
class LicenseRow:
    licensee: str
    kind: str
    rate_per_play: int
    expiry: int
    fees_paid: int


def licensees(engine: Engine, work_id: int) -> list[LicenseRow]:
    t = License.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.work_id == work_id).order_by(t.c.licensee, t.c.kind)).all()
    return [
        LicenseRow(r.licensee, LicenseKind(r.kind).name, int(r.rate_per_play), int(r.expiry), int(r.fees_paid))
        for r in rows
    ]


@dataclass(frozen=True)
class UnlicensedRow:
    licensee: str
    territory: str
    plays: int


def unlicensed_plays(engine: Engine, work_id: int) -> list[UnlicensedRow]:
    """Evidence of unlicensed use: plays recorded without a license, by licensee and territory."""
    p, d = Play.__table__, Device.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.c.licensee, p.c.territory, func.sum(p.c.count).label("plays"))
            .join(d, d.c.device_id == p.c.device_id)
            .where(p.c.work_id == work_id, p.c.licensed.is_(False))
            .group_by(d.c.licensee, p.c.territory)
            .order_by(d.c.licensee, p.c.territory)
        ).all()
    return [UnlicensedRow(r.licensee, r.territory, int(r.plays)) for r in rows]


# ----------------------------------------------------------------------------- time series


@dataclass(frozen=True)
class TimePoint:
    bucket: str  # YYYY-MM-DD or YYYY-MM
    plays: int
    licensed_plays: int
    earnings: int


def plays_over_time(
    engine: Engine, work_ids: Sequence[int], granularity: str = "day", first: int | None = None, last: int | None = None
) -> list[TimePoint]:
    """Plays and earnings of the works per UTC day or month (periods first..last as YYYYMM)."""
    if granularity not in ("day", "month"):
        raise ValueError("granularity is 'day' or 'month'")
    ids = sorted(set(work_ids))
    if not ids:
        return []
    lo, hi = first or 0, last or 999912
    p, b, lp = Play.__table__, PlayBatch.__table__, LicensePurchase.__table__
    acc: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    with engine.connect() as conn:
        day = (b.c.timestamp // DAY).label("day")
        for r in conn.execute(
            select(
                day,
                p.c.period,
                func.sum(p.c.count).label("plays"),
                func.sum(p.c.count).filter(p.c.licensed.is_(True)).label("licensed"),
                func.sum(p.c.amount).label("amount"),
            )
            .join(
                b,
                and_(
                    b.c.block_number == p.c.block_number,
                    b.c.log_index == p.c.log_index,
                    b.c.batch_index == p.c.batch_index,
                ),
            )
            .where(p.c.work_id.in_(ids), p.c.period.between(lo, hi))
            .group_by(day, p.c.period)
        ):
            cell = acc[int(r.day) if granularity == "day" else int(r.period)]
            cell[0] += int(r.plays)
            cell[1] += int(r.licensed or 0)
            cell[2] += int(r.amount or 0)
        fee_day = (lp.c.timestamp // DAY).label("day")
        for r in conn.execute(
            select(fee_day, lp.c.period, func.sum(lp.c.fee).label("fees"))
            .where(lp.c.work_id.in_(ids), lp.c.period.between(lo, hi))
            .group_by(fee_day, lp.c.period)
        ):
            acc[int(r.day) if granularity == "day" else int(r.period)][2] += int(r.fees)
    label = _day if granularity == "day" else _month
    return [TimePoint(label(k), *v) for k, v in sorted(acc.items())]


# ----------------------------------------------------------------------------- territories


@dataclass(frozen=True)
class TerritoryCell:
    period: str  # YYYY-MM
    territory: str  # ISO 3166-1 alpha-2, or "other"
    plays: int
    licensed_plays: int
    earnings: int


@dataclass(frozen=True)
class TerritoryReport:
    k: int
    cells: list[TerritoryCell] = field(default_factory=list)
    license_fees: int = 0  # fees have no territory

    def totals_by_territory(self) -> dict[str, TerritoryCell]:
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for c in self.cells:
            t = out[c.territory]
            t[0] += c.plays
            t[1] += c.licensed_plays
            t[2] += c.earnings
        return {k: TerritoryCell("all", k, *v) for k, v in sorted(out.items())}


def plays_by_territory(
    engine: Engine, work_ids: Sequence[int], k: int = 3, first: int | None = None, last: int | None = None
) -> TerritoryReport:
    """Plays and earnings per month and territory; a cell fed by fewer than k distinct devices
    goes into "other" (so does the territory of a period's cells merged there)."""
    if k < 1:
        raise ValueError("k is at least 1")
    ids = sorted(set(work_ids))
    if not ids:
        return TerritoryReport(k)
    lo, hi = first or 0, last or 999912
    p, lp = Play.__table__, LicensePurchase.__table__
    merged: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    with engine.connect() as conn:
        for r in conn.execute(
            select(
                p.c.period,
                p.c.territory,
                func.count(p.c.device_id.distinct()).label("devices"),
                func.sum(p.c.count).label("plays"),
                func.sum(p.c.count).filter(p.c.licensed.is_(True)).label("licensed"),
                func.sum(p.c.amount).label("amount"),
            )
            .where(p.c.work_id.in_(ids), p.c.period.between(lo, hi))
            .group_by(p.c.period, p.c.territory)
        ):
            territory = r.territory if r.devices >= k else OTHER
            cell = merged[(int(r.period), territory)]
            cell[0] += int(r.plays)
            cell[1] += int(r.licensed or 0)
            cell[2] += int(r.amount or 0)
        fees = int(
            conn.execute(
                select(func.coalesce(func.sum(lp.c.fee), 0)).where(lp.c.work_id.in_(ids), lp.c.period.between(lo, hi))
            ).scalar_one()
        )
    cells = [
        TerritoryCell(_month(period), territory, *v)
        for (period, territory), v in sorted(merged.items(), key=lambda kv: (kv[0][0], kv[0][1] == OTHER, kv[0][1]))
    ]
    return TerritoryReport(k, cells, fees)


# ----------------------------------------------------------------------------- balances


@dataclass(frozen=True)
class Balance:
    address: str
    credited: int
    withdrawn: int

    @property
    def available(self) -> int:
        return self.credited - self.withdrawn


def balance(engine: Engine, address: str) -> Balance:
    address = checksum(address, "payee")
    with engine.connect() as conn:
        row = conn.execute(select(Payee.credited, Payee.withdrawn).where(Payee.address == address)).one_or_none()
    return Balance(address, int(row.credited), int(row.withdrawn)) if row else Balance(address, 0, 0)


def withdrawals(engine: Engine, address: str) -> list[dict[str, Any]]:
    w = Withdrawal.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(w).where(w.c.payee == checksum(address, "payee")).order_by(w.c.block_number.desc())
        ).all()
    return [{"to": r.to_address, "amount": int(r.amount), "timestamp": r.timestamp, "tx_hash": r.tx_hash} for r in rows]
