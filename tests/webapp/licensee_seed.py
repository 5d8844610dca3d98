"""Index rows of licensees for the licensee page tests, written as the indexer writes them: lic
holds a METERED license of work 1 and escrow with recent play charges; another licensee (other)
holds a FLAT license of work 2 and escrow of its own. Work 2 offers FLAT terms; works 3.. are
filler for the catalogue's pages."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ledger.db import session_scope
from ledger.models import EscrowMovement, Licensee, Terms
from tests.webapp.portal_support import Events, batch_row, license_rows, work_row

DAY = 86_400
RATE = 1_000


@dataclass
class LicenseeSeed:
    now: int
    lic_deposited: int
    lic_charged_recent: int
    lic_charged_old: int
    other_deposited: int

    @property
    def lic_balance(self) -> int:
        return self.lic_deposited - self.lic_charged_recent - self.lic_charged_old


def seed_licensees(engine, lic: str, other: str, filler: int = 0, lic_deposit: int = 5_000_000) -> LicenseeSeed:
    now = int(time.time())
    ev = Events(500, block_each=True)

    recent, old = 3_000_000, 250_000
    rows: list = [
        Terms(
            **ev(now - 30 * DAY), work_id=2, kind=0, fee=50_000_000, rate_per_play=0, duration=30 * DAY, offered=True
        ),
        Licensee(
            licensee_index=7,
            address=lic,
            registered_block=501,
            escrow_deposited=lic_deposit,
            escrow_withdrawn=0,
            escrow_charged=recent + old,
        ),
        Licensee(
            licensee_index=8,
            address=other,
            registered_block=502,
            escrow_deposited=77_700_000,
            escrow_withdrawn=0,
            escrow_charged=0,
        ),
        EscrowMovement(**ev(now - 20 * DAY), licensee=lic, counterparty=lic, direction="deposit", amount=lic_deposit),
        EscrowMovement(
            **ev(now - 20 * DAY), licensee=other, counterparty=other, direction="deposit", amount=77_700_000
        ),
        *license_rows(ev(now - 65 * DAY), lic, 1, 1, 0, RATE, now + 300 * DAY, 202609, updated_block=503),
        *license_rows(ev(now - 20 * DAY), other, 2, 0, 50_000_000, 0, now + 10 * DAY, 202611, updated_block=504),
    ]
    for i, (age, charged) in enumerate([(2 * DAY, recent // 2), (5 * DAY, recent - recent // 2), (20 * DAY, old)]):
        e, t = ev(now - age), now - age
        rows.append(batch_row(e, 90 + i, i, t - 60, t, charged, charged // RATE, 202611, licensee_index=7))
    for work_id in range(3, 3 + filler):
        rows.append(work_row(work_id, other, f"Filler {work_id:02d}", now, isrc=f"FRXYZ26{work_id:05d}"))
    with session_scope(engine) as session:
        session.add_all(rows)
    return LicenseeSeed(now, lic_deposit, recent, old, 77_700_000)
