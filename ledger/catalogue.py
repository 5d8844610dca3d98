"""What a licensee reads from the index: the catalogue of works and their license terms, the
licenses it holds, its escrow and the plays charged to it.

Everything comes from the indexer's tables (a work appears once its registration is indexed);
amounts are token units (exact integers). A licensee's own rows only: every function takes the
licensee's address.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, and_, func, or_, select

from .accounts import User
from .chain import LicenseKind, checksum
from .models import EscrowMovement, License, Licensee, LicensePurchase, PlayBatch, Terms, Work

PER_PAGE = 20
DAY = 86_400
#: The window of recent plays the escrow warning compares the balance with.
RECENT_DAYS = 7


@dataclass(frozen=True)
class TermsInfo:
    kind: str  # "FLAT" or "METERED"
    fee: int
    rate_per_play: int
    duration: int
    offered: bool


@dataclass(frozen=True)
class CatalogueEntry:
    work_id: int
    title: str | None
    isrc: str | None
    iswc: str | None
    owner: str
    artist: str | None  # the owner's portal username, when it has one
    terms: dict[str, TermsInfo] = field(default_factory=dict)

    @property
    def offered(self) -> list[TermsInfo]:
        return [t for t in self.terms.values() if t.offered]


@dataclass(frozen=True)
class CataloguePage:
    items: list[CatalogueEntry]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def terms_of(engine: Engine, work_ids: list[int]) -> dict[int, dict[str, TermsInfo]]:
    """The current terms (latest TermsSet per work and kind) of the works."""
    out: dict[int, dict[str, TermsInfo]] = {w: {} for w in work_ids}
    if not work_ids:
        return out
    t = Terms.__table__
    with engine.connect() as conn:
        for r in conn.execute(select(t).where(t.c.work_id.in_(work_ids)).order_by(t.c.block_number, t.c.log_index)):
            name = LicenseKind(r.kind).name
            out[int(r.work_id)][name] = TermsInfo(name, int(r.fee), int(r.rate_per_play), int(r.duration), r.offered)
    return out


def search(engine: Engine, query: str = "", page: int = 1, per_page: int = PER_PAGE) -> CataloguePage:
    """Registered works matching `query` in the title, the ISRC (dashes and case ignored), the
    owner's portal username or address, or the work id (``42`` or ``#42``); by work id,
    `per_page` a page."""
    w, u = Work.__table__, User.__table__
    base = select(w.c.work_id).select_from(w.outerjoin(u, u.c.address == w.c.owner))
    query = query.strip()
    if query:
        isrc = query.replace("-", "").replace(" ", "").upper()
        matches = [
            func.lower(w.c.title).like(_like(query), escape="\\"),
            func.lower(u.c.username).like(_like(query), escape="\\"),
            func.lower(w.c.owner) == query.lower(),
        ]
        if isrc.isalnum():
            matches.append(w.c.isrc.like(f"%{isrc}%"))
        number = query.removeprefix("#")
        if number.isdigit() and len(number) <= 12:
            matches.append(w.c.work_id == int(number))
        base = base.where(or_(*matches))
    page = max(1, page)
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(base.subquery())).scalar_one())
        ids: list[int] = list(
            conn.execute(base.order_by(w.c.work_id).limit(per_page).offset((page - 1) * per_page)).scalars()
        )
    return CataloguePage(_entries_in_order(engine, ids), total, page, per_page)


def entries(engine: Engine, work_ids: list[int]) -> list[CatalogueEntry]:
    """Catalogue entries of the given works (unknown ids left out), in the given order."""
    ids = [int(i) for i in dict.fromkeys(work_ids)]
    if not ids:
        return []
    return _entries_in_order(engine, ids)


def _entries_in_order(engine: Engine, ids: list[int]) -> list[CatalogueEntry]:
    """The entries of works ``ids`` (with their owner's username and current terms), in that order;
    unknown ids left out."""
    w, u = Work.__table__, User.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(w, u.c.username).select_from(w.outerjoin(u, u.c.address == w.c.owner)).where(w.c.work_id.in_(ids))
        ).all()
    terms = terms_of(engine, ids)
    by_id = {
        int(r.work_id): CatalogueEntry(
            int(r.work_id), r.title, r.isrc, r.iswc, r.owner, r.username, terms[int(r.work_id)]
        )
        for r in rows
    }
    return [by_id[i] for i in ids if i in by_id]


# ----------------------------------------------------------------------------- licenses held


@dataclass(frozen=True)
class HeldLicense:
    work_id: int
    title: str | None
    isrc: str | None
    kind: str
    rate_per_play: int
    expiry: int
    prev_rate_per_play: int
    prev_expiry: int
    fees_paid: int
    last_bought: int | None  # block time of the latest purchase

    def active(self, now: int | None = None) -> bool:
        return self.expiry > (int(time.time()) if now is None else now)


def licenses_of(engine: Engine, licensee: str) -> list[HeldLicense]:
    licensee = checksum(licensee, "licensee")
    lic, w, lp = License.__table__, Work.__table__, LicensePurchase.__table__
    with engine.connect() as conn:
        last = {
            (int(r.work_id), int(r.kind)): int(r.last)
            for r in conn.execute(
                select(lp.c.work_id, lp.c.kind, func.max(lp.c.timestamp).label("last"))
                .where(lp.c.licensee == licensee)
                .group_by(lp.c.work_id, lp.c.kind)
            )
        }
        rows = conn.execute(
            select(lic, w.c.title, w.c.isrc)
            .select_from(lic.outerjoin(w, w.c.work_id == lic.c.work_id))
            .where(lic.c.licensee == licensee)
            .order_by(lic.c.expiry.desc(), lic.c.work_id, lic.c.kind)
        ).all()
    return [
        HeldLicense(
            int(r.work_id),
            r.title,
            r.isrc,
            LicenseKind(r.kind).name,
            int(r.rate_per_play),
            int(r.expiry),
            int(r.prev_rate_per_play),
            int(r.prev_expiry),
            int(r.fees_paid),
            last.get((int(r.work_id), int(r.kind))),
        )
        for r in rows
    ]


def held_expiry(engine: Engine, licensee: str, work_id: int, kind: LicenseKind | int) -> int:
    """The indexed expiry of the licensee's license (0 when none)."""
    lic = License.__table__
    with engine.connect() as conn:
        found = conn.execute(
            select(lic.c.expiry).where(
                and_(
                    lic.c.licensee == checksum(licensee, "licensee"),
                    lic.c.work_id == work_id,
                    lic.c.kind == int(kind),
                )
            )
        ).scalar_one_or_none()
    return int(found or 0)


# ----------------------------------------------------------------------------- escrow


@dataclass(frozen=True)
class EscrowSummary:
    address: str
    licensee_index: int | None
    deposited: int
    withdrawn: int
    charged: int
    charged_recent: int  # plays charged over the last RECENT_DAYS days
    recent_days: int = RECENT_DAYS

    @property
    def balance(self) -> int:
        return self.deposited - self.withdrawn - self.charged

    def covers_recent_rate(self, balance: int | None = None) -> bool:
        """False when the balance would not pay for another `recent_days` days at the recent rate."""
        return (self.balance if balance is None else balance) >= self.charged_recent

    def days_left(self, balance: int | None = None) -> int | None:
        """Whole days the balance lasts at the recent rate (None when nothing was charged)."""
        if self.charged_recent == 0:
            return None
        return (self.balance if balance is None else balance) * self.recent_days // self.charged_recent


def escrow(engine: Engine, licensee: str, now: int | None = None) -> EscrowSummary:
    licensee = checksum(licensee, "licensee")
    since = (int(time.time()) if now is None else now) - RECENT_DAYS * DAY
    t, b = Licensee.__table__, PlayBatch.__table__
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.address == licensee)).one_or_none()
        if row is None:
            return EscrowSummary(licensee, None, 0, 0, 0, 0)
        recent: int = conn.execute(
            select(func.coalesce(func.sum(b.c.charged), 0)).where(
                b.c.licensee_index == row.licensee_index, b.c.timestamp >= since
            )
        ).scalar_one()
    return EscrowSummary(
        licensee,
        int(row.licensee_index),
        int(row.escrow_deposited),
        int(row.escrow_withdrawn),
        int(row.escrow_charged),
        int(recent),
    )


@dataclass(frozen=True)
class Movement:
    timestamp: int
    direction: str  # deposit | withdraw
    counterparty: str
    amount: int
    tx_hash: str


def escrow_movements(engine: Engine, licensee: str, limit: int = 50) -> list[Movement]:
    m = EscrowMovement.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(m)
            .where(m.c.licensee == checksum(licensee, "licensee"))
            .order_by(m.c.block_number.desc(), m.c.log_index.desc())
            .limit(limit)
        ).all()
    return [Movement(int(r.timestamp), r.direction, r.counterparty, int(r.amount), r.tx_hash) for r in rows]
