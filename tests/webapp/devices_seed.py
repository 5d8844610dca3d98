"""Index and pending-store rows of two licensees' devices, written as the indexer, ingest and the
relayer write them (real database, no mocks).

``lic`` has "Bar" (device id 1<<32|1, GB) and "Shop" (1<<32|2, FR); ``lic2`` has "Rival" (2<<32|1).
Work 1 is licensed to ``lic``, work 2 is not (its plays are recorded unlicensed, at $0).
Bar: batch 0 charged on chain, batch 1 pending, batch 2 held back for InsufficientEscrow,
batch 3 skipped (DeviceRevoked, relayer), batch 4 skipped (BadTimeRange, seen only by the indexer).
Shop: batch 0 inflight. Rival: batch 0 pending, batch 1 charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from eth_account import Account

from ledger import devices
from ledger.db import session_scope
from ledger.models import BatchSkip, IndexerCheckpoint, Licensee
from ledger.pending import PendingBatch
from ledger.playbatch import encode_entries, make_device_id
from tests.webapp.portal_support import batch_row, device_row, event, play_row, work_row

T0 = 1_790_000_000  # 2026-09-21
LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
RATE = 1_000
#: The seeded device keys (Bar and Shop are lic's, Rival is lic2's).
BAR, SHOP, RIVAL = (Account.from_key(bytes([k]) * 32).address for k in (0x31, 0x32, 0x33))


@dataclass
class DeviceSeed:
    bar: str
    shop: str
    rival: str
    bar_id: int
    shop_id: int
    rival_id: int


def _pending(device, device_id, nonce, plays_by_work, status, reason=None, received=T0):
    li, n = device_id >> 32, device_id & 0xFFFFFFFF
    entries = encode_entries(plays_by_work)
    return PendingBatch(
        device=device,
        licensee_index=li,
        device_number=n,
        nonce=nonce,
        from_time=received - 60,
        to_time=received - 1,
        entries=entries,
        signature=b"\x01" * 64,
        digest="0x" + f"{device_id:032x}{nonce:032x}",
        entry_count=len(plays_by_work),
        plays=sum(plays_by_work.values()),
        source="http",
        status=status,
        reason=reason,
        received_at=datetime.fromtimestamp(received, tz=UTC),
    )


def seed_devices(engine, lic, lic2, works: bool = True) -> DeviceSeed:
    """``works=False`` when portal_seed wrote works 1 and 2 already."""
    bar, shop, rival = BAR, SHOP, RIVAL
    bar_id, shop_id, rival_id = make_device_id(1, 1), make_device_id(1, 2), make_device_id(2, 1)
    rows: list = [
        IndexerCheckpoint(id=1, chain_id=31337, ledger_address=LEDGER, deploy_block=1, block_number=200, updated_at=T0),
        Licensee(licensee_index=1, address=lic.address, registered_block=10),
        Licensee(licensee_index=2, address=lic2.address, registered_block=11),
    ]
    for work_id, title in ((1, "Blue Hour"), (2, "Bob's Song")) if works else ():
        rows.append(work_row(work_id, lic2.address, title, T0 - 1000, registered_block=5))
    for device_id, address, licensee, territory in (
        (bar_id, bar, lic.address, "GB"),
        (shop_id, shop, lic.address, "FR"),
        (rival_id, rival, lic2.address, "US"),
    ):
        rows.append(device_row(device_id, address, licensee, territory, 20, T0 - 500))
    # on chain: Bar batch 0 (work 1: 30 licensed, work 2: 4 unlicensed); Rival batch 1 (work 1: 99)
    for i, (device_id, nonce, work_plays) in enumerate(
        [(bar_id, 0, {1: (30, True), 2: (4, False)}), (rival_id, 1, {1: (99, True)})]
    ):
        e = event(100 + i, T0 - 100)
        charged = sum(c * RATE for c, licensed in work_plays.values() if licensed)
        plays = sum(c for c, _ in work_plays.values())
        rows.append(batch_row(e, device_id, nonce, T0 - 200, T0 - 150, charged, plays, 202609, len(work_plays)))
        for work_id, (count, licensed) in work_plays.items():
            rows.append(play_row(e, work_id, device_id, count, licensed, RATE, "GB", 202609))
    rows.append(
        BatchSkip(
            block_number=102,
            log_index=1,
            tx_hash="0x" + "ab" * 32,
            timestamp=T0,
            device_id=bar_id,
            nonce=4,
            reason="BadTimeRange",
        )
    )
    rows += [
        _pending(bar, bar_id, 0, {1: 30, 2: 4}, "confirmed", received=T0 - 300),
        _pending(bar, bar_id, 1, {1: 7}, "pending", received=T0 + 10),
        _pending(bar, bar_id, 2, {1: 5, 2: 1}, "pending", "InsufficientEscrow", received=T0 + 20),
        _pending(bar, bar_id, 3, {1: 2}, "rejected", "DeviceRevoked", received=T0 + 30),
        _pending(shop, shop_id, 0, {1: 11}, "inflight", received=T0 + 40),
        _pending(rival, rival_id, 0, {1: 13}, "pending", received=T0 + 50),
    ]
    with session_scope(engine) as session:
        session.add_all(rows)
    for user, address, name, territory, device_id in (
        (lic, bar, "Bar", "GB", bar_id),
        (lic, shop, "Shop", "FR", shop_id),
        (lic2, rival, "Rival", "US", rival_id),
    ):
        row = devices.add_device(engine, user.id, address, name, territory, 31337, LEDGER)
        devices.update_device(engine, row.id, device_id=device_id)
    return DeviceSeed(bar, shop, rival, bar_id, shop_id, rival_id)
