"""Royalty statements per payee and period, from the index (see docs/statements.md).

For a payee and a period (a UTC month, a range of months, or all time) a statement has one
row per work the payee is concerned by, and totals:

- ``plays`` / ``licensed_plays``: plays of the work reported in the period (all / licensed);
- ``gross``: what accrued to the work in the period (licensed play charges + license fees),
  before any split, in token units;
- ``share_bps``: the payee's share in the split in force at the end of the period (0 when the
  payee was removed from the split);
- ``net``: what the chain credited to the payee from distributions of the work made in the
  period (each by the split in force when it was made, remainder to the first payee).

Over all time, the sum of ``net`` is exactly what the chain credited to the payee (its
withdrawals plus its balance). ``gross`` and ``net`` differ by more than the share whenever
money accrued in one period is distributed in another, or the split changed.

Periods are months of the block time of the events (UTC), stored as YYYYMM.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from .address import checksum
from .errors import UserError
from .models import PayeeCredit, SplitShare, Work, WorkPeriodStats

CSV_COLUMNS = ("work_id", "title", "isrc", "plays", "licensed_plays", "gross", "share_bps", "net")
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Period:
    """Months first..last inclusive as YYYYMM; None/None is all time."""

    first: int | None = None
    last: int | None = None

    @property
    def is_all_time(self) -> bool:
        return self.first is None and self.last is None

    @property
    def label(self) -> str:
        if self.is_all_time:
            return "all"
        a, b = _month_text(self.first) if self.first else "start", _month_text(self.last) if self.last else "now"
        return a if a == b else f"{a}..{b}"

    def contains(self, period: int) -> bool:
        return (self.first is None or period >= self.first) and (self.last is None or period <= self.last)


def _month_text(period: int) -> str:
    return f"{period // 100:04d}-{period % 100:02d}"


def parse_month(text: str, what: str = "period") -> int:
    m = _MONTH_RE.match(text.strip()) if isinstance(text, str) else None
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise UserError(f"{what} {text!r} is not a month like 2026-11")
    return int(m.group(1)) * 100 + int(m.group(2))


def parse_period(period: str | None = None, start: str | None = None, end: str | None = None) -> Period:
    """``--period 2026-11`` | ``--period all`` | ``--from 2026-01 --to 2026-03`` (either end may be open)."""
    if period is not None and (start is not None or end is not None):
        raise UserError("give either --period or --from/--to, not both")
    if period is not None:
        if period.strip().lower() == "all":
            return Period()
        month = parse_month(period)
        return Period(month, month)
    if start is None and end is None:
        raise UserError("give a period: --period 2026-11, --period all, or --from/--to months")
    first = parse_month(start, "--from") if start else None
    last = parse_month(end, "--to") if end else None
    if first and last and first > last:
        raise UserError(f"--from {start} is after --to {end}")
    return Period(first, last)


def period_of(timestamp: int) -> int:
    d = datetime.fromtimestamp(timestamp, tz=UTC)
    return d.year * 100 + d.month


@dataclass(frozen=True)
class StatementRow:
    work_id: int
    title: str | None
    isrc: str | None
    plays: int
    licensed_plays: int
    gross: int
    share_bps: int
    net: int


@dataclass(frozen=True)
class Totals:
    plays: int = 0
    licensed_plays: int = 0
    gross: int = 0
    net: int = 0


@dataclass(frozen=True)
class Statement:
    payee: str
    period: Period
    rows: list[StatementRow] = field(default_factory=list)

    @property
    def totals(self) -> Totals:
        return Totals(
            sum(r.plays for r in self.rows),
            sum(r.licensed_plays for r in self.rows),
            sum(r.gross for r in self.rows),
            sum(r.net for r in self.rows),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts as decimal strings of token units (exact in any JSON reader)."""

        def money(row: dict[str, Any]) -> dict[str, Any]:
            return {k: (str(v) if k in ("gross", "net") else v) for k, v in row.items()}

        return {
            "payee": self.payee,
            "period": {
                "label": self.period.label,
                "from": _month_text(self.period.first) if self.period.first else None,
                "to": _month_text(self.period.last) if self.period.last else None,
            },
            "rows": [money(asdict(r)) for r in self.rows],
            "totals": money(asdict(self.totals)),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in self.rows:
            writer.writerow(
                [r.work_id, r.title or "", r.isrc or "", r.plays, r.licensed_plays, r.gross, r.share_bps, r.net]
            )
        t = self.totals
        writer.writerow(["TOTAL", "", "", t.plays, t.licensed_plays, t.gross, "", t.net])
        return out.getvalue()


def _splits_of(conn: Connection, work_ids: set[int]) -> dict[int, list[tuple[int, dict[str, int]]]]:
    """Split history per work: [(period set, {payee: bps})] in chain order."""
    s = SplitShare.__table__
    history: dict[int, list[tuple[tuple[int, int], int, dict[str, int]]]] = {}
    if not work_ids:
        return {}
    for row in conn.execute(
        select(s.c.work_id, s.c.block_number, s.c.log_index, s.c.timestamp, s.c.payee, s.c.bps)
        .where(s.c.work_id.in_(sorted(work_ids)))
        .order_by(s.c.work_id, s.c.block_number, s.c.log_index, s.c.position)
    ):
        entries = history.setdefault(row.work_id, [])
        key = (row.block_number, row.log_index)
        if not entries or entries[-1][0] != key:
            entries.append((key, period_of(row.timestamp), {}))
        entries[-1][2][row.payee] = row.bps
    return {w: [(p, shares) for _, p, shares in entries] for w, entries in history.items()}


def statement(engine: Engine, payee: str, period: Period) -> Statement:
    """The statement of a payee for a period, from the index."""
    payee = checksum(payee, "payee")
    lo, hi = period.first or 0, period.last or 999912
    with engine.connect() as conn:
        c = PayeeCredit.__table__
        net: dict[int, int] = dict(
            conn.execute(
                select(c.c.work_id, func.sum(c.c.amount))
                .where(c.c.payee == payee, c.c.period.between(lo, hi))
                .group_by(c.c.work_id)
            ).all()
        )
        s = SplitShare.__table__
        candidates: set[int] = set(conn.execute(select(s.c.work_id).where(s.c.payee == payee).distinct()).scalars())
        shares: dict[int, int] = {}
        works = set(net)
        for work_id, history in _splits_of(conn, candidates).items():
            before = [h for h in history if h[0] < lo]
            during = [h for h in history if lo <= h[0] <= hi]
            in_force = ([before[-1]] if before else []) + during
            if any(payee in sh for _, sh in in_force):
                works.add(work_id)
            at_end = [sh for p, sh in history if p <= hi]
            shares[work_id] = at_end[-1].get(payee, 0) if at_end else 0
        if not works:
            return Statement(payee, period, [])
        st = WorkPeriodStats.__table__
        ids = sorted(works)
        stats = {
            row.work_id: row
            for row in conn.execute(
                select(
                    st.c.work_id,
                    func.sum(st.c.plays).label("plays"),
                    func.sum(st.c.licensed_plays).label("licensed_plays"),
                    func.sum(st.c.play_gross).label("play_gross"),
                    func.sum(st.c.fee_gross).label("fee_gross"),
                )
                .where(st.c.work_id.in_(ids), st.c.period.between(lo, hi))
                .group_by(st.c.work_id)
            )
        }
        w = Work.__table__
        info = {
            row.work_id: row
            for row in conn.execute(select(w.c.work_id, w.c.title, w.c.isrc).where(w.c.work_id.in_(ids)))
        }
    rows = []
    for work_id in ids:
        agg = stats.get(work_id)
        meta = info.get(work_id)
        rows.append(
            StatementRow(
                work_id=work_id,
                title=meta.title if meta else None,
                isrc=meta.isrc if meta else None,
                plays=int(agg.plays) if agg else 0,
                licensed_plays=int(agg.licensed_plays) if agg else 0,
                gross=int(agg.play_gross) + int(agg.fee_gross) if agg else 0,
                share_bps=shares.get(work_id, 0),
                net=int(net.get(work_id, 0)),
            )
        )
    return Statement(payee, period, rows)


def credited_total(engine: Engine, payee: str) -> int:
    """All that the index says the chain credited to a payee (statement net over all time)."""
    c = PayeeCredit.__table__
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(c.c.amount), 0)).where(c.c.payee == checksum(payee, "payee"))
            ).scalar_one()
        )


# ----------------------------------------------------------------------------- usage by territory

TERRITORY_CSV_COLUMNS = ("work_id", "territory", "plays", "licensed_plays", "gross")


@dataclass(frozen=True)
class TerritoryRow:
    """Usage of one work in one territory and period. Territory '' holds license fees, which
    belong to no territory; play amounts go to the territory of the device that played."""

    work_id: int
    territory: str
    plays: int
    licensed_plays: int
    gross: int


@dataclass(frozen=True)
class TerritoryUsage:
    payee: str
    period: Period
    rows: list[TerritoryRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payee": self.payee,
            "period": {"label": self.period.label},
            "rows": [{**asdict(r), "gross": str(r.gross)} for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(TERRITORY_CSV_COLUMNS)
        for r in self.rows:
            writer.writerow([r.work_id, r.territory, r.plays, r.licensed_plays, r.gross])
        writer.writerow(
            [
                "TOTAL",
                "",
                sum(r.plays for r in self.rows),
                sum(r.licensed_plays for r in self.rows),
                sum(r.gross for r in self.rows),
            ]
        )
        return out.getvalue()


def usage_by_territory(engine: Engine, payee: str, period: Period) -> TerritoryUsage:
    """Plays, licensed plays and gross per work and territory, over the works of the payee's
    statement for the period; per work they add up to the statement's row."""
    payee = checksum(payee, "payee")
    works = [r.work_id for r in statement(engine, payee, period).rows]
    if not works:
        return TerritoryUsage(payee, period, [])
    lo, hi = period.first or 0, period.last or 999912
    st = WorkPeriodStats.__table__
    with engine.connect() as conn:
        result = conn.execute(
            select(
                st.c.work_id,
                st.c.territory,
                func.sum(st.c.plays).label("plays"),
                func.sum(st.c.licensed_plays).label("licensed_plays"),
                func.sum(st.c.play_gross + st.c.fee_gross).label("gross"),
            )
            .where(st.c.work_id.in_(works), st.c.period.between(lo, hi))
            .group_by(st.c.work_id, st.c.territory)
            .order_by(st.c.work_id, st.c.territory)
        )
        rows = [TerritoryRow(r.work_id, r.territory, int(r.plays), int(r.licensed_plays), int(r.gross)) for r in result]
    return TerritoryUsage(payee, period, rows)
