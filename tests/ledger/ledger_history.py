"""A scripted three-month history on the chain, with what the tests expect from it.

October 2026: four works, splits, terms, two licensees with escrow, devices in GB, FR and US,
plays (licensed and not), distributions. November: a split change (pending money goes out
under the old split first), a revoked device, a replayed nonce, an expired license, a work
transfer, withdrawals, an escrow withdrawal. December: plays left undistributed.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field

from eth_account import Account
from eth_utils import keccak

from ledger.chain import LedgerClient, LicenseKind
from ledger.playbatch import Group, encode_entries, sign_batch

USD = 10**6
DAY = 86_400
METERED, FLAT = LicenseKind.METERED, LicenseKind.FLAT


def month_ts(year: int, month: int, day: int = 1, hour: int = 12) -> int:
    return calendar.timegm((year, month, day, hour, 0, 0))


@dataclass
class History:
    accounts: dict[str, str]
    works: dict[str, int]
    devices: dict[str, tuple[int, object]]  # name -> (device id, key)
    withdrawn: dict[str, int] = field(default_factory=dict)  # payee -> total withdrawn
    distributed: dict[int, int] = field(default_factory=dict)  # work -> total distributed
    applied_batches: int = 0
    skipped: list = field(default_factory=list)
    plays_by_work_month: dict[tuple[int, int], int] = field(default_factory=dict)
    nonces: dict[str, int] = field(default_factory=dict)

    @property
    def payees(self) -> list[str]:
        names = ("artist", "label", "cowriter", "producer", "newpayee")
        return [self.accounts[n] for n in names]


class _Script:
    def __init__(self, w3, client: LedgerClient):
        self.w3 = w3
        self.client = client
        self.chain_id = w3.eth.chain_id
        self.ledger = client.deployment.ledger.address

    def as_(self, address: str) -> LedgerClient:
        return self.client.as_account(address)

    def at(self, ts: int) -> None:
        """The next block gets this timestamp."""
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [ts])

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]


def build_history(w3, client: LedgerClient) -> History:
    acc = w3.eth.accounts
    names = [
        "deployer",
        "artist",
        "label",
        "cowriter",
        "producer",
        "venue",
        "broadcaster",
        "newpayee",
        "savings",
        "shop",
    ]
    a = dict(zip(names, acc))
    s = _Script(w3, client)
    h = History(accounts=a, works={}, devices={})
    keys = {n: Account.from_key(keccak(text=f"ledger-test-device-{n}")) for n in ("gb1", "fr1", "us1", "gb2")}

    # ---------------------------------------------------------------- October 2026
    s.at(month_ts(2026, 10, 1, 9))
    artist, label = s.as_(a["artist"]), s.as_(a["label"])
    h.works["harbour"] = artist.register_work(title="Blue Harbour", iswc="T-123.456.789-0", isrc="GBABC2600001")
    h.works["lullaby"] = artist.register_work(title="Lullaby for Machines")
    h.works["anthem"] = label.register_work("https://example.org/works/anthem.json", isrc="USXYZ2600042")
    h.works["thirds"] = label.register_work(title="Thirds, Rounded", isrc="FRAAA2600007")
    w = h.works
    artist.set_split(w["harbour"], [a["artist"], a["cowriter"], a["producer"]], [6000, 2500, 1500])
    artist.set_split(w["lullaby"], [a["artist"]], [10000])
    label.set_split(w["anthem"], [a["label"], a["artist"]], [7000, 3000])
    label.set_split(w["thirds"], [a["label"], a["cowriter"], a["producer"]], [3333, 3333, 3334])

    artist.set_terms(w["harbour"], METERED, 5 * USD, 1234, 90 * DAY)
    artist.set_terms(w["lullaby"], METERED, 0, 777, 90 * DAY)
    label.set_terms(w["anthem"], METERED, 1 * USD, 1001, 90 * DAY)
    label.set_terms(w["anthem"], FLAT, 250 * USD, 0, 30 * DAY)
    label.set_terms(w["thirds"], METERED, 0, 3, 1 * DAY)

    venue, broadcaster = s.as_(a["venue"]), s.as_(a["broadcaster"])
    deployer = s.as_(a["deployer"])
    for who in ("venue", "broadcaster"):
        deployer.mint(a[who], 10_000 * USD)
    venue.deposit(1_000 * USD)
    venue.buy_license(w["harbour"], METERED)
    venue.buy_license(w["anthem"], METERED)
    venue.buy_license(w["thirds"], METERED)  # one day only: expired by November
    broadcaster.buy_license(w["anthem"], FLAT)
    broadcaster.buy_license(w["lullaby"], METERED)
    broadcaster.deposit(50 * USD)
    h.devices["gb1"] = (venue.register_device(keys["gb1"].address, "GB", venue.device_proof(keys["gb1"])), keys["gb1"])
    h.devices["fr1"] = (venue.register_device(keys["fr1"].address, "FR", venue.device_proof(keys["fr1"])), keys["fr1"])
    h.devices["us1"] = (
        broadcaster.register_device(keys["us1"].address, "US", broadcaster.device_proof(keys["us1"])),
        keys["us1"],
    )

    s.at(month_ts(2026, 10, 10))
    submit(
        s,
        h,
        [
            ("gb1", {w["harbour"]: 120, w["lullaby"]: 7, w["anthem"]: 33, w["thirds"]: 1000}),
            ("fr1", {w["harbour"]: 15, w["anthem"]: 2}),
            ("gb1", {w["harbour"]: 1}),
            ("us1", {w["lullaby"]: 400, w["anthem"]: 9, w["harbour"]: 3}),
        ],
    )
    s.at(month_ts(2026, 10, 20))
    distribute(s, h, "harbour")
    distribute(s, h, "anthem")

    # ---------------------------------------------------------------- November 2026
    s.at(month_ts(2026, 11, 2))
    # The broadcaster's escrow cannot pay 65535 plays: skipped, nonce left unused; top up and resend.
    submit(s, h, [("gb1", {w["harbour"]: 77, w["thirds"]: 500}), ("us1", {w["lullaby"]: 65535})], expect_skips=1)
    broadcaster.deposit(100 * USD)
    submit(s, h, [("us1", {w["lullaby"]: 65535})], nonce_override=("us1", h.nonces["us1"] - 1))
    # A split change: what harbour accrued is distributed under the old split first.
    change = artist.set_split(w["harbour"], [a["artist"], a["newpayee"]], [5000, 5000])
    assert [e.name for e in change.events] == ["Distributed", "SplitSet"]
    h.distributed[w["harbour"]] += change.named("Distributed")[0].args["amount"]
    label.lock_split(w["anthem"])
    venue.revoke_device(h.devices["fr1"][0])
    s.w3.provider.make_request("evm_mine", [month_ts(2026, 11, 3)])  # a day later: plays after the revocation
    # skipped: the revoked device (plays after its revocation), and a replayed nonce
    submit(s, h, [("fr1", {w["harbour"]: 5})], expect_skips=1)
    submit(s, h, [("gb1", {w["harbour"]: 9})], nonce_override=("gb1", 0), expect_skips=1)
    h.devices["gb2"] = (venue.register_device(keys["gb2"].address, "GB", venue.device_proof(keys["gb2"])), keys["gb2"])
    submit(s, h, [("gb2", {w["harbour"]: 11, w["anthem"]: 4, w["lullaby"]: 2})])
    artist.transfer_work(w["lullaby"], a["label"])
    s.at(month_ts(2026, 11, 25))
    for name in ("harbour", "lullaby", "anthem", "thirds"):
        distribute(s, h, name)
    h.withdrawn[a["artist"]] = s.as_(a["artist"]).withdraw(a["savings"])
    h.withdrawn[a["label"]] = s.as_(a["label"]).withdraw()
    venue.request_escrow_withdrawal(100 * USD)  # available after the notice period (7 days)

    # ---------------------------------------------------------------- December 2026
    s.w3.provider.make_request("evm_mine", [month_ts(2026, 12, 3)])  # the notice is over
    venue.withdraw_escrow(100 * USD, a["venue"])
    submit(s, h, [("gb1", {w["harbour"]: 40, w["anthem"]: 40}), ("gb2", {w["thirds"]: 3}), ("us1", {w["anthem"]: 12})])
    distribute(s, h, "anthem")
    h.withdrawn[a["cowriter"]] = s.as_(a["cowriter"]).withdraw()
    s.at(month_ts(2026, 12, 20))
    submit(s, h, [("gb1", {w["harbour"]: 6})])
    return h


def distribute(s: _Script, h: History, work: str) -> None:
    work_id = h.works[work]
    h.distributed[work_id] = h.distributed.get(work_id, 0) + s.client.distribute(work_id)


def submit(s: _Script, h: History, batches, nonce_override=None, expect_skips=0) -> None:
    """Signs and submits batches [(device name, {work: count})] in one call, grouped by licensee."""
    groups: dict[int, Group] = {}
    now = s.now()
    for name, counts in batches:
        device_id, key = h.devices[name]
        if nonce_override and nonce_override[0] == name:
            nonce = nonce_override[1]
        else:
            nonce = h.nonces.get(name, 0)
            h.nonces[name] = nonce + 1
        batch = sign_batch(key, s.chain_id, s.ledger, nonce, now - 3600, now - 60, encode_entries(counts))
        group = groups.setdefault(device_id >> 32, Group(device_id >> 32))
        group.batches.append((device_id & 0xFFFFFFFF, batch))
    result = s.client.submit_batches(list(groups.values()))
    assert len(result.skipped) == expect_skips, result.skipped
    h.skipped.extend(result.skipped)
    h.applied_batches += len(result.applied)
    from ledger.indexer import period_of

    month = period_of(s.w3.eth.get_block(result.tx.block_number)["timestamp"])
    for record in result.applied:
        for work_id, count in record.entries:
            h.plays_by_work_month[(work_id, month)] = h.plays_by_work_month.get((work_id, month), 0) + count
