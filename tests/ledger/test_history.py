"""The scripted history indexed into SQLite and PostgreSQL matches the chain to the unit."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.models import BatchSkip, Device, Licensee, Payee, PayeeCredit, PlayBatch, Work, WorkPeriodStats
from ledger.statements import Period, credited_total, statement

from ledger_helpers import index


def test_statement_net_equals_chain_credits_for_every_payee(engine, w3, deployment, client, history):
    index(engine, w3, deployment)
    for payee in history.payees:
        credited_on_chain = client.balance_of(payee) + history.withdrawn.get(payee, 0)
        assert credited_on_chain > 0
        assert statement(engine, payee, Period()).totals.net == credited_on_chain
        assert credited_total(engine, payee) == credited_on_chain


def test_monthly_nets_add_up_to_all_time(engine, w3, deployment, history):
    index(engine, w3, deployment)
    for payee in history.payees:
        months = sum(statement(engine, payee, Period(m, m)).totals.net for m in (202610, 202611, 202612))
        assert months == statement(engine, payee, Period()).totals.net


def test_payee_balances_match_chain(engine, w3, deployment, client, history):
    index(engine, w3, deployment)
    with Session(engine) as conn:
        rows = {p.address: p for p in conn.execute(select(Payee)).scalars()}
    for payee in history.payees:
        assert rows[payee].credited - rows[payee].withdrawn == client.balance_of(payee)
        assert rows[payee].withdrawn == history.withdrawn.get(payee, 0)


def test_work_totals_match_chain(engine, w3, deployment, client, history):
    index(engine, w3, deployment)
    with Session(engine) as conn:
        works = {w.work_id: w for w in conn.execute(select(Work)).scalars()}
    assert set(works) == set(history.works.values())
    for work_id, work in works.items():
        assert work.licensed_plays == client.plays_of(work_id)
        assert work.accrued - work.distributed == client.accrued_of(work_id)
        assert work.distributed == history.distributed.get(work_id, 0)


def test_plays_per_work_and_month_match_the_batches_applied(engine, w3, deployment, history):
    index(engine, w3, deployment)
    st = WorkPeriodStats.__table__
    with Session(engine) as conn:
        got = {
            (r.work_id, r.period): int(r.plays)
            for r in conn.execute(
                select(st.c.work_id, st.c.period, func.sum(st.c.plays).label("plays")).group_by(
                    st.c.work_id, st.c.period
                )
            )
            if r.plays
        }
    assert got == history.plays_by_work_month


def test_escrow_matches_chain(engine, w3, deployment, client, history):
    index(engine, w3, deployment)
    with Session(engine) as conn:
        licensees = list(conn.execute(select(Licensee)).scalars())
    assert {l.address for l in licensees} == {history.accounts["venue"], history.accounts["broadcaster"]}
    for lic in licensees:
        assert lic.escrow_deposited - lic.escrow_withdrawn - lic.escrow_charged == client.escrow_of(lic.address)
        assert lic.licensee_index == client.licensee_index_of(lic.address)


def test_conservation_holds_in_the_index(engine, w3, deployment, client, history):
    """Token held by the ledger == escrows + undistributed accruals + payee balances."""
    index(engine, w3, deployment)
    with Session(engine) as conn:
        escrow = sum(
            l.escrow_deposited - l.escrow_withdrawn - l.escrow_charged for l in conn.execute(select(Licensee)).scalars()
        )
        accrued = sum(w.accrued - w.distributed for w in conn.execute(select(Work)).scalars())
        balances = sum(p.credited - p.withdrawn for p in conn.execute(select(Payee)).scalars())
    held = client.token_balance(deployment.ledger.address)
    assert held > 0
    assert escrow + accrued + balances == held


def test_split_change_distributes_pending_under_old_split(engine, w3, deployment, history):
    """The cowriter left harbour's split in November but got its share of what accrued before."""
    index(engine, w3, deployment)
    harbour, cowriter = history.works["harbour"], history.accounts["cowriter"]
    nov = statement(engine, cowriter, Period(202611, 202611))
    row = next(r for r in nov.rows if r.work_id == harbour)
    assert row.net > 0 and row.share_bps == 0
    dec = statement(engine, cowriter, Period(202612, 202612))
    assert harbour not in [r.work_id for r in dec.rows]
    newpayee = statement(engine, history.accounts["newpayee"], Period(202611, 202611))
    assert [r.share_bps for r in newpayee.rows if r.work_id == harbour] == [5000]


def test_unlicensed_and_expired_plays_are_recorded_without_charge(engine, w3, deployment, history):
    index(engine, w3, deployment)
    w = history.works
    st = WorkPeriodStats.__table__
    with Session(engine) as conn:

        def totals(work, period):
            r = conn.execute(
                select(func.sum(st.c.plays), func.sum(st.c.licensed_plays), func.sum(st.c.play_gross)).where(
                    st.c.work_id == work, st.c.period == period
                )
            ).one()
            return tuple(int(x or 0) for x in r)

        # thirds: venue's one-day METERED license covers October, not November or December
        assert totals(w["thirds"], 202610) == (1000, 1000, 3000)
        assert totals(w["thirds"], 202611) == (500, 0, 0)
        assert totals(w["thirds"], 202612) == (3, 0, 0)
        # lullaby: the venue never licensed it (7 plays), the broadcaster did (400 at 777)
        assert totals(w["lullaby"], 202610) == (407, 400, 400 * 777)


def test_plays_carry_the_device_territory(engine, w3, deployment, history):
    index(engine, w3, deployment)
    st = WorkPeriodStats.__table__
    with Session(engine) as conn:
        rows = dict(
            conn.execute(
                select(st.c.territory, func.sum(st.c.plays))
                .where(st.c.work_id == history.works["harbour"], st.c.period == 202610)
                .group_by(st.c.territory)
            ).all()
        )
    assert {k: int(v) for k, v in rows.items()} == {"GB": 121, "FR": 15, "US": 3, "": 0}


def test_skipped_batches_and_devices_are_indexed(engine, w3, deployment, history):
    index(engine, w3, deployment)
    with Session(engine) as conn:
        skips = sorted((s.device_id, s.nonce, s.reason) for s in conn.execute(select(BatchSkip)).scalars())
        devices = {d.device_id: d for d in conn.execute(select(Device)).scalars()}
        batches = conn.execute(select(func.count()).select_from(PlayBatch)).scalar_one()
    assert skips == sorted(history.skipped)
    assert batches == history.applied_batches
    assert devices[history.devices["fr1"][0]].revoked
    assert not devices[history.devices["gb1"][0]].revoked
    assert devices[history.devices["us1"][0]].territory == "US"


def test_work_metadata_and_owner(engine, w3, deployment, history):
    index(engine, w3, deployment)
    with Session(engine) as conn:
        works = {w.work_id: w for w in conn.execute(select(Work)).scalars()}
    harbour = works[history.works["harbour"]]
    assert (harbour.title, harbour.isrc, harbour.iswc) == ("Blue Harbour", "GBABC2600001", "T-123.456.789-0")
    assert works[history.works["anthem"]].title is None  # an https URI is never fetched
    assert works[history.works["anthem"]].split_locked
    assert works[history.works["lullaby"]].owner == history.accounts["label"]
    assert works[history.works["lullaby"]].registrant == history.accounts["artist"]


def test_month_statement_rows(engine, w3, deployment, client, history):
    index(engine, w3, deployment)
    st = statement(engine, history.accounts["artist"], Period(202610, 202610))
    assert [r.work_id for r in st.rows] == sorted([history.works[n] for n in ("harbour", "lullaby", "anthem")])
    harbour = next(r for r in st.rows if r.work_id == history.works["harbour"])
    # venue: 120 + 15 + 1 licensed at 1234, broadcaster 3 unlicensed; + the 5 USD fee
    assert (harbour.plays, harbour.licensed_plays, harbour.gross) == (139, 136, 136 * 1234 + 5_000_000)
    assert harbour.share_bps == 6000
    with Session(engine) as conn:
        credits = conn.execute(
            select(func.sum(PayeeCredit.amount)).where(
                PayeeCredit.payee == history.accounts["artist"],
                PayeeCredit.work_id == history.works["harbour"],
                PayeeCredit.period == 202610,
            )
        ).scalar_one()
    assert harbour.net == credits > 0
    assert st.totals.net == sum(r.net for r in st.rows)


def test_reindexing_an_up_to_date_index_changes_nothing(engine, w3, deployment, history):
    first = index(engine, w3, deployment)
    assert first.events > 0
    again = index(engine, w3, deployment)
    assert again.ranges == 0 and again.events == 0


def test_usage_by_territory_adds_up_to_the_statement(engine, w3, deployment, history):
    from ledger.statements import usage_by_territory

    index(engine, w3, deployment)
    territories = set()
    for payee in history.payees:
        for period in (Period(), Period(202611, 202611)):
            rows = statement(engine, payee, period).rows
            usage = usage_by_territory(engine, payee, period).rows
            for row in rows:
                mine = [u for u in usage if u.work_id == row.work_id]
                assert sum(u.plays for u in mine) == row.plays
                assert sum(u.licensed_plays for u in mine) == row.licensed_plays
                assert sum(u.gross for u in mine) == row.gross
            assert {u.work_id for u in usage} <= {r.work_id for r in rows}
            territories |= {u.territory for u in usage if u.plays}
    assert {"GB", "FR", "US"} <= territories
