"""Statements equal a straightforward computation from the event rows (SQLite and PostgreSQL).

``ledger.statements`` reads summaries (work_period_stats by month, the works' all-time counters)
and a payee's split history; here every figure is recomputed from the rows the summaries come from:
play rows, license purchases, payee credits and split shares, for every payee of the scripted
history and periods that are months, ranges, open ranges and all time. Through the library (an
engine) and through ``ledger.statements.statement_at`` (the driver path of ``ledger statement``).
"""

from __future__ import annotations

from sqlalchemy import select

from ledger.models import LicensePurchase, PayeeCredit, Play, SplitShare, Work
from ledger.statements import Period, StatementRow, period_of, statement, statement_at

from ledger_helpers import MONTHS, index

PERIODS = [*MONTHS, Period(202611, None), Period(None, 202610), Period(202609, 202609)]


def _reference(engine, payee: str, period: Period) -> list[StatementRow]:
    def inside(p: int) -> bool:
        return period.contains(p)

    with engine.connect() as conn:
        plays = conn.execute(select(Play.work_id, Play.period, Play.count, Play.licensed, Play.amount)).all()
        fees = conn.execute(select(LicensePurchase.work_id, LicensePurchase.period, LicensePurchase.fee)).all()
        credits = conn.execute(
            select(PayeeCredit.work_id, PayeeCredit.period, PayeeCredit.payee, PayeeCredit.amount)
        ).all()
        shares = conn.execute(
            select(
                SplitShare.work_id,
                SplitShare.block_number,
                SplitShare.log_index,
                SplitShare.timestamp,
                SplitShare.payee,
                SplitShare.bps,
            ).order_by(SplitShare.block_number, SplitShare.log_index, SplitShare.position)
        ).all()
        info = {w.work_id: (w.title, w.isrc) for w in conn.execute(select(Work.work_id, Work.title, Work.isrc))}
    # every SplitSet event of every work, in chain order: (period, {payee: bps})
    events: dict[int, dict[tuple[int, int], tuple[int, dict[str, int]]]] = {}
    for s in shares:
        events.setdefault(s.work_id, {}).setdefault((s.block_number, s.log_index), (period_of(s.timestamp), {}))[1][
            s.payee
        ] = s.bps
    lo = period.first or 0
    hi = period.last or 999912
    works: set[int] = {c.work_id for c in credits if c.payee == payee and inside(c.period)}
    share: dict[int, int] = {}
    for work_id, evs in events.items():
        history = [evs[k] for k in sorted(evs)]
        if not any(payee in sh for _, sh in history):
            continue
        # the split in force at the start of the period, and every split set during it
        in_force = [sh for p, sh in history if p < lo][-1:] + [sh for p, sh in history if lo <= p <= hi]
        if any(payee in sh for sh in in_force):
            works.add(work_id)
        at_end = [sh for p, sh in history if p <= hi]
        share[work_id] = at_end[-1].get(payee, 0) if at_end else 0
    rows = []
    for work_id in sorted(works):
        mine = [p for p in plays if p.work_id == work_id and inside(p.period)]
        title, isrc = info.get(work_id, (None, None))
        rows.append(
            StatementRow(
                work_id=work_id,
                title=title,
                isrc=isrc,
                plays=sum(p.count for p in mine),
                licensed_plays=sum(p.count for p in mine if p.licensed),
                gross=sum(p.amount for p in mine)
                + sum(f.fee for f in fees if f.work_id == work_id and inside(f.period)),
                share_bps=share.get(work_id, 0),
                net=sum(c.amount for c in credits if c.work_id == work_id and c.payee == payee and inside(c.period)),
            )
        )
    return rows


def test_statements_equal_a_computation_from_the_event_rows(engine, w3, deployment, history):
    index(engine, w3, deployment)
    url = engine.url.render_as_string(hide_password=False)
    compared = 0
    for payee in history.payees:
        for period in PERIODS:
            expected = _reference(engine, payee, period)
            assert statement(engine, payee, period).rows == expected, (payee, period)
            assert statement_at(url, payee.lower(), period).rows == expected, (payee, period)
            compared += sum(1 for r in expected if r.plays or r.gross or r.net)
    assert compared > 0
    for r in statement(engine, history.accounts["artist"], Period()).rows:
        assert isinstance(r.gross, int) and isinstance(r.net, int)
