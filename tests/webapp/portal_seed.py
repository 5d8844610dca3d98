"""Index rows for the portal tests, written as the indexer writes them (real database, no mocks).

Work 1 "Blue Hour" is alice's, split alice 70% / the label 30%, METERED terms; work 2 is bob's
alone. Work 1 has plays in October and November 2026: GB from 3 devices (shown), FR from one
device (merged into "other" with k = 3), and unlicensed plays in US by another licensee.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass

from eth_account import Account

from ledger.db import session_scope
from ledger.models import (
    Distribution,
    Payee,
    PayeeCredit,
    SplitShare,
    Terms,
    Withdrawal,
    Work,
    WorkPeriodStats,
)
from tests.webapp.portal_support import Events, batch_row, device_row, license_rows, play_row, work_row

VENUE = Account.from_key(b"\x11" * 32).address
PIRATE = Account.from_key(b"\x22" * 32).address
RATE = 1_000  # $0.001 per play


def ts(year: int, month: int, day: int) -> int:
    return calendar.timegm((year, month, day, 12, 0, 0))


@dataclass
class Seeded:
    alice: str
    label: str
    bob: str
    plays_w1: int
    gross_w1: int
    net_alice: int
    net_label: int
    withdrawn_alice: int


def seed(engine, alice: str, label: str, bob: str) -> Seeded:
    ev = Events(100)
    rows: list = []
    t0 = ts(2026, 10, 1)
    rows += [
        work_row(1, alice, "Blue Hour", t0, isrc="USSKG1912345", iswc="T-034.524.680-1"),
        work_row(2, bob, "Bob's Song", t0, isrc="GBABC2600002"),
    ]
    e = ev(t0)
    rows += [
        SplitShare(**e, work_id=1, position=0, payee=alice, bps=7000),
        SplitShare(**e, work_id=1, position=1, payee=label, bps=3000),
    ]
    rows.append(SplitShare(**ev(t0), work_id=2, position=0, payee=bob, bps=10000))
    rows.append(Terms(**ev(t0), work_id=1, kind=1, fee=0, rate_per_play=RATE, duration=365 * 86400, offered=True))
    rows += license_rows(ev(t0), VENUE, 1, 1, 0, RATE, t0 + 365 * 86400, 202610, updated_block=100)
    devices = [(1, "GB", VENUE), (2, "GB", VENUE), (3, "GB", VENUE), (4, "FR", VENUE), (5, "US", PIRATE)]
    for device_id, territory, owner in devices:
        rows.append(device_row(device_id, Account.from_key(bytes([device_id]) * 32).address, owner, territory, 100, t0))
    stats: dict = {}
    total_plays = total_gross = 0
    for (y, m, d), device_id, count, licensed in [
        ((2026, 10, 3), 1, 10, True),
        ((2026, 10, 3), 2, 20, True),
        ((2026, 10, 4), 3, 30, True),
        ((2026, 10, 5), 4, 5, True),
        ((2026, 10, 5), 5, 7, False),
        ((2026, 11, 2), 1, 40, True),
        ((2026, 11, 2), 4, 2, True),
    ]:
        ev.next_block()
        t = ts(y, m, d)
        period = y * 100 + m
        territory = devices[device_id - 1][1]
        amount = count * RATE if licensed else 0
        e = ev(t)
        rows.append(batch_row(e, device_id, ev.block, t - 60, t, amount, count, period, licensee_index=1))
        rows.append(play_row(e, 1, device_id, count, licensed, RATE, territory, period))
        cell = stats.setdefault((period, territory), [0, 0, 0])
        cell[0] += count
        cell[1] += count if licensed else 0
        cell[2] += amount
        total_plays += count
        total_gross += amount
    for (period, territory), (plays, licensed, gross) in stats.items():
        rows.append(
            WorkPeriodStats(
                work_id=1,
                period=period,
                territory=territory,
                plays=plays,
                licensed_plays=licensed,
                play_gross=gross,
                fee_gross=0,
            )
        )
    # November: distribute October's 65 licensed plays ($0.065): alice 45,500, label 19,500 units.
    ev.next_block()
    dist = 65 * RATE
    e = ev(ts(2026, 11, 10))
    rows.append(Distribution(**e, work_id=1, amount=dist, period=202611))
    net_alice, net_label = dist * 7000 // 10000, dist * 3000 // 10000
    net_alice += dist - net_alice - net_label
    rows += [
        PayeeCredit(**e, work_id=1, position=0, payee=alice, bps=7000, amount=net_alice, period=202611),
        PayeeCredit(**e, work_id=1, position=1, payee=label, bps=3000, amount=net_label, period=202611),
    ]
    withdrawn = 10_000
    rows.append(Withdrawal(**ev(ts(2026, 11, 12)), payee=alice, to_address=alice, amount=withdrawn))
    rows += [
        Payee(address=alice, credited=net_alice, withdrawn=withdrawn),
        Payee(address=label, credited=net_label, withdrawn=0),
    ]
    with session_scope(engine) as session:
        session.add_all(rows)
        w1 = session.get(Work, 1)
        w1.plays, w1.licensed_plays, w1.accrued, w1.distributed = total_plays, total_plays - 7, total_gross, dist
    return Seeded(alice, label, bob, total_plays, total_gross, net_alice, net_label, withdrawn)
