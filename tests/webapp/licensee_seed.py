"""Index rows of licensees for the licensee page tests, written as the indexer writes them: lic
holds a METERED license of work 1 and escrow with recent play charges; another licensee (other)
holds a FLAT license of work 2 and escrow of its own. Work 2 offers FLAT terms; works 3.. are
filler for the catalogue's pages."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ledger.db import session_scope
from ledger.models import EscrowMovement, License, Licensee, LicensePurchase, PlayBatch, Terms, Work

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
    block = [500]

    def ev(t: int) -> dict:
        block[0] += 1
        return {"block_number": block[0], "log_index": 0, "tx_hash": "0x" + f"{block[0]:064x}", "timestamp": t}

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
        License(
            licensee=lic,
            work_id=1,
            kind=1,
            rate_per_play=RATE,
            expiry=now + 300 * DAY,
            fees_paid=0,
            updated_block=503,
        ),
        LicensePurchase(
            **ev(now - 65 * DAY),
            licensee=lic,
            work_id=1,
            kind=1,
            fee=0,
            rate_per_play=RATE,
            expiry=now + 300 * DAY,
            period=202609,
        ),
        License(
            licensee=other,
            work_id=2,
            kind=0,
            rate_per_play=0,
            expiry=now + 10 * DAY,
            fees_paid=50_000_000,
            updated_block=504,
        ),
        LicensePurchase(
            **ev(now - 20 * DAY),
            licensee=other,
            work_id=2,
            kind=0,
            fee=50_000_000,
            rate_per_play=0,
            expiry=now + 10 * DAY,
            period=202611,
        ),
    ]
    for i, (age, charged) in enumerate([(2 * DAY, recent // 2), (5 * DAY, recent - recent // 2), (20 * DAY, old)]):
        rows.append(
            PlayBatch(
                **ev(now - age),
                batch_index=0,
                device_id=90 + i,
                licensee_index=7,
                nonce=i,
                from_time=now - age - 60,
                to_time=now - age,
                charged=charged,
                entries=1,
                plays=charged // RATE,
                period=202611,
            )
        )
    for work_id in range(3, 3 + filler):
        rows.append(
            Work(
                work_id=work_id,
                owner=other,
                registrant=other,
                isrc=f"FRXYZ26{work_id:05d}",
                title=f"Filler {work_id:02d}",
                uri="data:",
                registered_block=100,
                registered_at=now,
                split_locked=False,
                plays=0,
                licensed_plays=0,
                accrued=0,
                distributed=0,
            )
        )
    with session_scope(engine) as session:
        session.add_all(rows)
    return LicenseeSeed(now, lic_deposit, recent, old, 77_700_000)
