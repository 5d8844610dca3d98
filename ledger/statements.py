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
from typing import TYPE_CHECKING, Any

from .address import checksum
from .errors import DatabaseError, UserError

if TYPE_CHECKING:  # SQLAlchemy and the models are imported only by the functions that need an engine
    from sqlalchemy import Engine

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


# ----------------------------------------------------------------------------- the queries
#
# Plain SQL over the driver's own connection (psycopg 3 or sqlite3), so that ``ledger statement``
# can read the index without importing SQLAlchemy (see :func:`connect_url`). Parameters are
# written ``:name`` (sqlite3's style) and turned into ``%(name)s`` for psycopg.

#: The works a payee may be concerned by: those whose split ever named it, and those it was credited for.
_CANDIDATES = (
    "SELECT work_id FROM split_shares WHERE payee = :payee UNION SELECT work_id FROM payee_credits WHERE payee = :payee"
)

_SQL_NET = (
    "SELECT work_id, SUM(amount) FROM payee_credits WHERE payee = :payee AND period BETWEEN :lo AND :hi "
    "GROUP BY work_id"
)
#: Split history of the works whose split ever named the payee, one row per SplitSet in chain order:
#: its time, whether it names the payee and the payee's share (a split names a payee at most once).
_SQL_SPLITS = (
    "SELECT work_id, MIN(timestamp), MAX(CASE WHEN payee = :payee THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN payee = :payee THEN bps ELSE 0 END) FROM split_shares "
    "WHERE work_id IN (SELECT work_id FROM split_shares WHERE payee = :payee) "
    "GROUP BY work_id, block_number, log_index ORDER BY work_id, block_number, log_index"
)
#: Accruals of the candidate works in a range of months (index on work_period_stats (period, work_id)).
_SQL_STATS = (
    "SELECT work_id, SUM(plays), SUM(licensed_plays), SUM(play_gross + fee_gross) FROM work_period_stats "
    f"WHERE period BETWEEN :lo AND :hi AND work_id IN ({_CANDIDATES}) GROUP BY work_id"
)
#: Title and ISRC, and the all-time totals the indexer keeps on the work row: plays, licensed plays
#: and accrued are the sums of work_period_stats over all months (the same events add to both).
_SQL_WORKS = f"SELECT work_id, title, isrc, plays, licensed_plays, accrued FROM works WHERE work_id IN ({_CANDIDATES})"

_PARAM = re.compile(r":(\w+)")


class _Reader:
    """Runs the statement queries on a DB-API connection of psycopg 3 or sqlite3."""

    def __init__(self, raw: Any, dialect: str):
        self.raw = raw
        self.pyformat = dialect == "postgresql"

    def rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        if self.pyformat:
            sql = _PARAM.sub(r"%(\1)s", sql)
        cur = self.raw.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall())
        finally:
            cur.close()


def _splits_of(rows: list[tuple[Any, ...]]) -> dict[int, list[tuple[int, bool, int]]]:
    """Split history per work from _SQL_SPLITS rows: [(period set, names the payee, its bps)] in chain order."""
    history: dict[int, list[tuple[int, bool, int]]] = {}
    for work_id, timestamp, named, bps in rows:
        history.setdefault(work_id, []).append((period_of(timestamp), bool(named), int(bps)))
    return history


def _statement(reader: _Reader, payee: str, period: Period) -> Statement:
    lo, hi = period.first or 0, period.last or 999912
    params = {"payee": payee, "lo": lo, "hi": hi}
    net: dict[int, int] = {w: int(a) for w, a in reader.rows(_SQL_NET, params)}
    shares: dict[int, int] = {}
    works = set(net)
    for work_id, history in _splits_of(reader.rows(_SQL_SPLITS, params)).items():
        # on the statement: named by the split in force at the start of the period or by one set
        # within it; the share is the one of the split in force at its end
        named_before = in_force = False
        at_end = 0
        for p, named, bps in history:
            if p < lo:
                named_before = named
            elif p <= hi and named:
                in_force = True
            if p <= hi:
                at_end = bps
        if in_force or named_before:
            works.add(work_id)
        shares[work_id] = at_end
    if not works:
        return Statement(payee, period, [])
    info = {r[0]: r for r in reader.rows(_SQL_WORKS, params)}
    if period.is_all_time:
        stats = {w: (r[3], r[4], r[5]) for w, r in info.items()}
    else:
        stats = {r[0]: (r[1], r[2], r[3]) for r in reader.rows(_SQL_STATS, params)}
    rows = []
    for work_id in sorted(works):
        agg = stats.get(work_id)
        meta = info.get(work_id)
        rows.append(
            StatementRow(
                work_id=work_id,
                title=meta[1] if meta else None,
                isrc=meta[2] if meta else None,
                plays=int(agg[0]) if agg else 0,
                licensed_plays=int(agg[1]) if agg else 0,
                gross=int(agg[2]) if agg else 0,
                share_bps=shares.get(work_id, 0),
                net=net.get(work_id, 0),
            )
        )
    return Statement(payee, period, rows)


def statement(engine: Engine, payee: str, period: Period) -> Statement:
    """The statement of a payee for a period, from the index."""
    payee = checksum(payee, "payee")
    with engine.connect() as conn:
        return _statement(_Reader(conn.connection.driver_connection, engine.dialect.name), payee, period)


def connect_url(url: str) -> tuple[Any, str] | None:
    """A DB-API connection (and its dialect) for a database URL, opened without SQLAlchemy, so
    that ``ledger statement`` starts fast: ``postgresql[+psycopg]://`` URLs without query options,
    and ``sqlite:///`` files that exist. None for anything else (the caller opens an engine)."""
    import os

    scheme, sep, rest = url.partition("://")
    if not sep or "?" in rest:
        return None
    if scheme in ("postgresql", "postgresql+psycopg"):
        import psycopg

        try:
            return psycopg.connect("postgresql://" + rest), "postgresql"
        except psycopg.OperationalError as exc:
            raise DatabaseError(
                f"cannot reach the database {_hide_password(url)}: {str(exc).strip().splitlines()[0]}"
            ) from None
    if scheme in ("sqlite", "sqlite+pysqlite") and rest.startswith("/") and len(rest) > 1:
        path = rest[1:]
        if not os.path.isfile(path):
            return None
        import sqlite3

        return sqlite3.connect(path), "sqlite"
    return None


def _hide_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def statement_at(url: str, payee: str, period: Period) -> Statement | None:
    """:func:`statement` on the database at ``url`` through :func:`connect_url`, after checking
    that its schema is at the head revision; None when the URL needs an engine."""
    from .revisions import head_revision

    opened = connect_url(url)
    if opened is None:
        return None
    raw, dialect = opened
    try:
        reader = _Reader(raw, dialect)
        try:
            versions = [r[0] for r in reader.rows("SELECT version_num FROM alembic_version", {})]
        except Exception as exc:  # noqa: BLE001 - only "no alembic_version table" (not migrated) is expected
            if type(exc).__name__ != "UndefinedTable" and "no such table" not in str(exc):
                raise
            versions = []
        head = head_revision()
        if versions != [head]:
            current = ", ".join(versions) or "nothing"
            raise DatabaseError(f"the database schema is at {current}, not {head}: run `ledger db upgrade`")
        return _statement(reader, checksum(payee, "payee"), period)
    finally:
        raw.close()


def credited_total(engine: Engine, payee: str) -> int:
    """All that the index says the chain credited to a payee (statement net over all time)."""
    from sqlalchemy import func, select

    from .models import PayeeCredit

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
    from sqlalchemy import func, select

    from .models import WorkPeriodStats

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
