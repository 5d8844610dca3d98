"""The relayer's parts without a node: settlement rules, the packer (an injected estimator over
an in-memory SQLite pending store) and fees. The relayer against Anvil is in tests/e2e."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak
from hexbytes import HexBytes
from sqlalchemy import select
from web3 import Web3

from ledger import playbatch
from ledger.db import make_engine, session_factory
from ledger.events import DecodedEvent
from ledger.pending import (
    CONFIRMED,
    INFLIGHT,
    PENDING,
    REJECTED,
    TX_DONE,
    TX_SENT,
    PendingBatch,
    RelayTransaction,
    create_tables,
    utcnow,
)
from ledger.relayer import RelayerConfig
from ledger.relayer.packer import Packer, encode
from ledger.relayer.sender import DEFAULT_TIP, Sender, fees_for
from ledger.relayer.settlement import (
    INSUFFICIENT_ESCROW,
    UNATTRIBUTABLE,
    apply_verdict,
    settle_from_chain,
    settle_outcome,
    settle_receipt,
    settle_revert,
)

TX = "0x" + "ab" * 32
BLOCK = 1234


# ----------------------------------------------------------------------------- settlement rules


@dataclass
class Row:
    """A PendingBatch-like inflight row."""

    id: int
    nonce: int
    licensee_index: int = 1
    device_number: int = 1
    plays: int = 5
    status: str = INFLIGHT
    reason: Optional[str] = None
    relay_tx_id: Optional[int] = 7
    confirmed_tx_hash: Optional[str] = None
    confirmed_block: Optional[int] = None

    @property
    def device_id(self) -> int:
        return (self.licensee_index << 32) | self.device_number


def _applied(*rows: Row, tx_hash: str = TX, block: int = BLOCK) -> dict:
    return {
        (r.device_id, r.nonce): playbatch.AppliedBatch(
            playbatch.PlayRecord(r.device_id, r.nonce, 0, 1, 0, [(1, r.plays)]), tx_hash, block
        )
        for r in rows
    }


def _outcome(applied=(), skipped=()) -> playbatch.BatchOutcome:
    """The outcome of a transaction that applied `applied` and skipped each (row, reason) of `skipped`."""
    return playbatch.BatchOutcome(
        applied=_applied(*applied), skipped={(r.device_id, r.nonce): reason for r, reason in skipped}
    )


def _apply(rows, verdicts):
    for row, verdict in zip(rows, verdicts, strict=True):
        apply_verdict(row, verdict)


def _settle(rows, outcome):
    verdicts, report = settle_outcome(rows, outcome, TX, BLOCK, calldata=300, gas_used=90_000)
    _apply(rows, verdicts)
    return report


def test_applied_batch_is_confirmed_with_tx_hash_and_block():
    row = Row(1, nonce=0, reason="stale")
    report = _settle([row], _outcome(applied=[row]))
    assert (row.status, row.reason, row.confirmed_tx_hash, row.confirmed_block) == (CONFIRMED, None, TX, BLOCK)
    assert row.relay_tx_id == 7
    assert (report.confirmed, report.rejected, report.repending) == (1, 0, 0)


def test_batch_skipped_for_insufficient_escrow_goes_back_to_pending_with_the_reason():
    row = Row(1, nonce=0)
    report = _settle([row], _outcome(skipped=[(row, INSUFFICIENT_ESCROW)]))
    assert (row.status, row.reason, row.relay_tx_id) == (PENDING, INSUFFICIENT_ESCROW, None)
    assert (report.repending, report.reasons) == (1, {INSUFFICIENT_ESCROW: 1})


def test_batch_skipped_for_another_reason_is_rejected_with_the_reason():
    row = Row(1, nonce=0)
    report = _settle([row], _outcome(skipped=[(row, "BadSignature")]))
    assert (row.status, row.reason, row.confirmed_tx_hash) == (REJECTED, "BadSignature", None)
    assert (report.rejected, report.reasons) == (1, {"BadSignature": 1})


def test_batch_in_neither_event_is_rejected_as_unattributable():
    from ledger.relayer.settlement import UNATTRIBUTABLE

    row = Row(1, nonce=0, reason=INSUFFICIENT_ESCROW)
    other = Row(2, nonce=1)
    report = _settle([row], _outcome(applied=[other]))
    assert (row.status, row.reason) == (REJECTED, UNATTRIBUTABLE)
    assert (report.confirmed, report.rejected, report.repending) == (0, 1, 0)


def test_report_counts_every_fate_of_one_transaction():
    rows = [Row(i, nonce=i, plays=i + 1) for i in range(4)]
    report = _settle(
        rows, _outcome(applied=[rows[0]], skipped=[(rows[1], INSUFFICIENT_ESCROW), (rows[2], "DeviceRevoked")])
    )
    assert (report.tx_hash, report.batches, report.plays, report.calldata, report.gas_used) == (TX, 4, 10, 300, 90_000)
    assert (report.confirmed, report.rejected, report.repending, report.reverted) == (1, 2, 1, False)
    assert [r.status for r in rows] == [CONFIRMED, PENDING, REJECTED, REJECTED]


def test_reverted_transaction_sends_every_batch_back_to_pending():
    rows = [Row(1, nonce=0, reason=INSUFFICIENT_ESCROW), Row(2, nonce=1)]
    verdicts, report = settle_revert(rows, TX, calldata=300, gas_used=50_000)
    _apply(rows, verdicts)
    assert [(r.status, r.relay_tx_id) for r in rows] == [(PENDING, None), (PENDING, None)]
    assert rows[0].reason == INSUFFICIENT_ESCROW
    assert (report.reverted, report.repending, report.confirmed, report.gas_used) == (True, 2, 0, 50_000)


def _from_chain(rows, applied, used):
    asked = []

    def nonce_used(device_id, nonce):
        asked.append((device_id, nonce))
        return (device_id, nonce) in used

    verdicts, report = settle_from_chain(rows, applied, nonce_used, TX, calldata=300)
    _apply(rows, verdicts)
    return report, asked


def test_settle_from_chain_repends_batch_whose_nonce_is_unused():
    row = Row(1, nonce=3)
    report, _ = _from_chain([row], applied={}, used=set())
    assert (row.status, row.relay_tx_id, row.reason) == (PENDING, None, None)
    assert report.repending == 1


def test_settle_from_chain_confirms_batch_applied_by_another_transaction():
    row = Row(1, nonce=3)
    other_tx = "0x" + "cd" * 32
    report, asked = _from_chain([row], applied={(row.device_id, 3): (other_tx, 99)}, used={(row.device_id, 3)})
    assert (row.status, row.confirmed_tx_hash, row.confirmed_block) == (CONFIRMED, other_tx, 99)
    assert report.confirmed == 1
    assert asked == []  # an applied batch needs no nonce lookup


def test_settle_from_chain_rejects_used_nonce_not_applied_as_nonce_used():
    row = Row(1, nonce=3)
    report, _ = _from_chain([row], applied={}, used={(row.device_id, 3)})
    assert (row.status, row.reason) == (REJECTED, "NonceUsed")
    assert (report.rejected, report.reasons) == (1, {})


# ----------------------------------------------------------------------------- the pending store


@pytest.fixture
def sessions():
    engine = make_engine("sqlite://")
    create_tables(engine)
    yield session_factory(engine)
    engine.dispose()


RELAYER = Account.create().address


def _device(licensee_index: int, device_number: int) -> str:
    return Web3.to_checksum_address(f"0x{licensee_index:020x}{device_number:020x}")


def _store(sessions, count, licensee_index=1, device_number=1, **fields) -> list[int]:
    """Stores `count` pending batches of one device (nonces 0..count-1); returns their ids."""
    device = _device(licensee_index, device_number)
    with sessions.begin() as s:
        rows = [
            PendingBatch(
                device=device,
                licensee_index=licensee_index,
                device_number=device_number,
                nonce=n,
                from_time=100 * n,
                to_time=100 * n + 50,
                entries=struct.pack(">IH", 1, 1 + n),
                signature=bytes([n + 1]) * 64,
                digest=f"0x{licensee_index:02x}{device_number:02x}{n:060x}",
                entry_count=1,
                plays=1 + n,
                source="http",
                **fields,
            )
            for n in range(count)
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def _batches_in(data: bytes) -> int:
    """How many one-entry batches of one licensee a submitBatches `data` holds."""
    one = playbatch.BATCH_HEADER_SIZE + playbatch.ENTRY_SIZE + playbatch.SIGNATURE_SIZE
    return (len(data) - 1 - playbatch.GROUP_HEADER_SIZE) // one


class Estimator:
    """Gas of 100,000 per batch; `fails(data)` says when the call reverts."""

    def __init__(self, fails=lambda data: False):
        self.fails = fails
        self.seen: list[int] = []

    def __call__(self, data: bytes) -> int:
        self.seen.append(_batches_in(data))
        if self.fails(data):
            raise ValueError("execution reverted")
        return 100_000 * _batches_in(data)


def _pack(sessions, estimator, **limits):
    packer = Packer(RelayerConfig(**limits), estimator)
    with sessions() as s:
        rows, data, gas = packer.pack(s)
        return [r.nonce for r in rows], data, gas


def test_pack_returns_nothing_when_nothing_is_pending(sessions):
    assert _pack(sessions, Estimator()) == ([], b"", 0)


def test_pack_takes_as_many_batches_as_fit_under_the_input_byte_limit(sessions):
    _store(sessions, 10)
    with sessions() as s:
        first4 = list(s.scalars(select(PendingBatch).order_by(PendingBatch.nonce).limit(4)))
    four_bytes = playbatch.call_input_size(len(encode(first4)))
    nonces, data, gas = _pack(sessions, Estimator(), max_input_bytes=four_bytes)
    assert nonces == [0, 1, 2, 3]
    assert playbatch.call_input_size(len(data)) <= four_bytes
    assert gas == 400_000


def test_pack_orders_batches_by_licensee_device_and_nonce(sessions):
    _store(sessions, 2, licensee_index=2, device_number=1)
    _store(sessions, 2, licensee_index=1, device_number=2)
    _store(sessions, 2, licensee_index=1, device_number=1)
    packer = Packer(RelayerConfig(), Estimator())
    with sessions() as s:
        rows, _, _ = packer.pack(s)
        assert [(r.licensee_index, r.device_number, r.nonce) for r in rows] == [
            (1, 1, 0),
            (1, 1, 1),
            (1, 2, 0),
            (1, 2, 1),
            (2, 1, 0),
            (2, 1, 1),
        ]


def test_partitioned_relayers_pack_disjoint_licensees_that_cover_the_store(sessions):
    for licensee_index in (1, 2, 3, 4, 5):
        _store(sessions, 2, licensee_index=licensee_index)
    packed = {}
    for k in (0, 1):
        with sessions() as s:
            rows, _, _ = Packer(RelayerConfig(partition=(k, 2)), Estimator()).pack(s)
            packed[k] = {(r.licensee_index, r.nonce) for r in rows}
    assert {i for i, _ in packed[0]} == {2, 4}
    assert {i for i, _ in packed[1]} == {1, 3, 5}
    assert packed[0] | packed[1] == {(i, n) for i in (1, 2, 3, 4, 5) for n in (0, 1)}


def test_pack_shrinks_when_the_estimate_exceeds_the_gas_cap(sessions):
    _store(sessions, 10)
    estimator = Estimator()
    nonces, _, gas = _pack(sessions, estimator, gas_cap=350_000)
    assert estimator.seen == [10, 3]  # shrink_for_gas(10, 1_000_000, 350_000) == 3
    assert (nonces, gas) == ([0, 1, 2], 300_000)


def test_the_next_pack_starts_at_what_the_last_gas_per_batch_fits_under_the_cap(sessions):
    _store(sessions, 10, device_number=1)
    _store(sessions, 10, device_number=2)
    estimator = Estimator()
    packer = Packer(RelayerConfig(gas_cap=650_000), estimator)
    with sessions() as s:
        first, _, _ = packer.pack(s)
        assert estimator.seen == [20, 6]  # shrink_for_gas(20, 2_000_000, 650_000) == 6
        assert packer.gas_per_batch == 100_000
        estimator.seen.clear()
        again, _, gas = packer.pack(s)  # the same candidates (nothing was marked inflight)
    assert estimator.seen == [5]  # int(650,000 * 0.92 / 100,000): one estimate, under the cap
    assert (len(again), gas) == (5, 500_000)


def test_pack_halves_when_the_estimate_fails(sessions):
    _store(sessions, 10)
    estimator = Estimator(fails=lambda data: _batches_in(data) > 2)
    nonces, _, gas = _pack(sessions, estimator)
    assert estimator.seen == [10, 5, 2]
    assert (nonces, gas) == ([0, 1], 200_000)


def test_pack_rejects_a_single_batch_that_reverts_on_its_own_and_packs_the_rest(sessions):
    first, *_ = _store(sessions, 4)
    bad_signature = bytes([1]) * 64  # nonce 0's
    estimator = Estimator(fails=lambda data: bad_signature in data)
    nonces, _, _ = _pack(sessions, estimator)
    assert estimator.seen == [4, 2, 1, 3]
    assert nonces == [1, 2, 3]
    with sessions() as s:
        rejected = s.get(PendingBatch, first)
        assert (rejected.status, rejected.reason) == (REJECTED, "Reverted")


def test_pack_raises_a_connection_error_of_the_estimator_without_halving(sessions):
    _store(sessions, 4)

    def node_down(data):
        raise ConnectionError("connection refused")

    with pytest.raises(ConnectionError):
        _pack(sessions, node_down)
    with sessions() as s:
        assert {r.status for r in s.scalars(select(PendingBatch))} == {PENDING}


def test_pack_skips_an_unpayable_batch_until_its_retry_time(sessions):
    (waiting,) = _store(sessions, 1, reason=INSUFFICIENT_ESCROW)
    assert _pack(sessions, Estimator(), escrow_retry_after=60)[0] == []
    with sessions.begin() as s:
        s.get(PendingBatch, waiting).updated_at = utcnow() - timedelta(seconds=61)
    assert _pack(sessions, Estimator(), escrow_retry_after=60)[0] == [0]


# ----------------------------------------------------------------------------- settling in the database


def _records(*rows: PendingBatch) -> bytes:
    out = b""
    for r in rows:
        out += struct.pack(">QIII", r.device_id, r.nonce, r.from_time, r.to_time) + (0).to_bytes(12, "big")
        out += struct.pack(">H", 1) + r.entries
    return out


def _relay_tx(sessions, ids) -> int:
    with sessions.begin() as s:
        rtx = RelayTransaction(
            sender=RELAYER,
            tx_nonce=0,
            tx_hashes=TX,
            raw_tx=b"raw",
            gas_limit=1,
            calldata_size=300,
            batch_count=len(ids),
            sent_block=1,
            status=TX_SENT,
        )
        s.add(rtx)
        s.flush()
        for i in ids:
            row = s.get(PendingBatch, i)
            row.status, row.relay_tx_id = INFLIGHT, rtx.id
        return rtx.id


def test_settle_receipt_writes_each_verdict_and_marks_the_transaction_done(sessions):
    ids = _store(sessions, 3)
    rtx_id = _relay_tx(sessions, ids)
    with sessions() as s:
        applied = s.get(PendingBatch, ids[0])
        skipped = s.get(PendingBatch, ids[1])
        logs = [
            DecodedEvent("RoyaltyLedger", "PlaysRecorded", {"records": _records(applied)}, BLOCK, 0, TX),
            DecodedEvent(
                "RoyaltyLedger",
                "BatchSkipped",
                {"deviceId": skipped.device_id, "nonce": 1, "reason": playbatch.SKIP_REASONS.index("BadSignature")},
                BLOCK,
                1,
                TX,
            ),
        ]
    receipt = {
        "transactionHash": bytes.fromhex(TX[2:]),
        "blockNumber": BLOCK,
        "gasUsed": 77_000,
        "status": 1,
        "logs": logs,
    }
    report = settle_receipt(sessions, rtx_id, receipt, decode=lambda log: log)
    assert (report.confirmed, report.rejected, report.repending, report.gas_used) == (1, 2, 0, 77_000)
    with sessions() as s:
        rows = [s.get(PendingBatch, i) for i in ids]
        assert [(r.status, r.reason) for r in rows] == [
            (CONFIRMED, None),
            (REJECTED, "BadSignature"),
            (REJECTED, UNATTRIBUTABLE),
        ]
        assert (rows[0].confirmed_tx_hash, rows[0].confirmed_block) == (TX, BLOCK)
        rtx = s.get(RelayTransaction, rtx_id)
        assert (rtx.status, rtx.mined_tx_hash, rtx.mined_block, rtx.gas_used) == (TX_DONE, TX, BLOCK, 77_000)


# ----------------------------------------------------------------------------- fees


def test_first_fees_are_twice_the_base_fee_plus_the_tip():
    assert fees_for(100, 7) == {"maxPriorityFeePerGas": 7, "maxFeePerGas": 207}


def test_a_replacement_raises_both_fees_by_an_eighth_plus_one():
    old = {"maxFeePerGas": 800, "maxPriorityFeePerGas": 80}
    assert fees_for(100, 7, bump_from=old) == {"maxPriorityFeePerGas": 91, "maxFeePerGas": 901}


def test_a_replacement_follows_the_market_when_it_rose_further():
    old = {"maxFeePerGas": 800, "maxPriorityFeePerGas": 80}
    assert fees_for(1_000, 200, bump_from=old) == {"maxPriorityFeePerGas": 200, "maxFeePerGas": 2_200}


SUBMIT_ABI = [
    {
        "type": "function",
        "name": "submitBatches",
        "inputs": [{"name": "data", "type": "bytes"}],
        "outputs": [{"name": "applied", "type": "uint256"}],
        "stateMutability": "nonpayable",
    }
]


class FakeEth:
    """The node calls the sender makes, answered from memory; `calls` keeps their order."""

    def __init__(self, calls, base_fee=100, tip=None):
        self.calls, self.base_fee, self.tip = calls, base_fee, tip

    def get_block(self, which):
        return {"baseFeePerGas": self.base_fee}

    @property
    def max_priority_fee(self):
        if self.tip is None:
            raise ValueError("the method eth_maxPriorityFeePerGas does not exist")
        return self.tip

    def send_raw_transaction(self, raw):
        self.calls.append(("broadcast", bytes(raw)))


class FakeVersions:
    def __init__(self, calls, hashes):
        self.calls, self.hashes = calls, hashes

    def add_version(self, rtx_id, tx_hash, raw):
        self.calls.append(("record", raw))
        self.hashes.append(tx_hash)
        return list(self.hashes)


def _sender(calls, hashes=None, **eth):
    w3 = Web3()
    to = Account.create().address
    fake = type("FakeWeb3", (), {"eth": FakeEth(calls, **eth)})()
    config = RelayerConfig(bump_after=0, poll=0, receipt_timeout=5)
    return Sender(
        fake,
        w3.eth.contract(address=to, abi=SUBMIT_ABI),
        to,
        Account.create(),
        31337,
        config,
        FakeVersions(calls, hashes if hashes is not None else []),
    )


def test_fees_fall_back_to_a_one_gwei_tip_without_eth_max_priority_fee():
    assert _sender([]).fees() == {"maxPriorityFeePerGas": DEFAULT_TIP, "maxFeePerGas": 200 + DEFAULT_TIP}


def _signed(sender, nonce=5):
    fees = {"maxFeePerGas": 800, "maxPriorityFeePerGas": 80}
    signed, _ = sender.sign(b"\x04data", nonce=nonce, gas=90_000, fees=fees)
    return signed


def test_bump_re_signs_under_the_same_nonce_with_higher_fees_and_records_before_broadcasting():
    calls = []
    sender = _sender(calls, tip=80)
    hashes, raw = sender.bump(1, _signed(sender).raw_transaction, tx_nonce=5, gas=90_000)
    assert calls == [("record", raw), ("broadcast", raw)]
    new = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    assert (new["nonce"], new["gas"], new["maxFeePerGas"], new["maxPriorityFeePerGas"]) == (5, 90_000, 901, 91)
    assert sender.contract.decode_function_input(new["data"])[1]["data"] == b"\x04data"
    assert hashes == ["0x" + keccak(raw).hex()]


def test_bump_re_signs_the_raw_bytes_recorded_in_the_database():
    sender = _sender([], tip=80)
    stored_raw = bytes(_signed(sender).raw_transaction)  # what RelayTransaction.raw_tx holds
    sender.bump(1, stored_raw, tx_nonce=5, gas=90_000)


def test_await_receipt_re_signs_a_stuck_transaction_and_returns_the_receipt_of_the_mined_version():
    calls, hashes = [], []
    sender = _sender(calls, hashes, tip=80)
    signed = _signed(sender)
    first = "0x" + bytes(signed.hash).hex()
    hashes.append(first)
    mined = {"blockNumber": 9, "status": 1}
    sender.w3.eth.get_transaction_receipt = lambda h: mined if h != first else None
    assert sender.await_receipt(1, [first], signed.raw_transaction, tx_nonce=5, gas=90_000) is mined
    assert [c[0] for c in calls] == ["record", "broadcast"]
    assert len(hashes) == 2


# ----------------------------------------------------------------------------- predicted gas
def _observed(packer, batches, gas_used, entries=None, applied=True, reverted=False, expected=None):
    """The packer sees the receipt of a pack of `batches` one-entry batches."""
    packer.observe(
        batches,
        batches if entries is None else entries,
        gas_used if expected is None else expected,
        gas_used,
        applied=applied,
        reverted=reverted,
    )


def test_after_a_receipt_where_every_batch_applied_the_gas_is_predicted_without_an_estimate(sessions):
    _store(sessions, 20)
    estimator = Estimator()
    packer = Packer(RelayerConfig(gas_cap=1_000_000), estimator)
    with sessions() as s:
        first, _, gas = packer.pack(s)  # no model yet: estimated
        assert (estimator.seen[-1], packer.predicted) == (len(first), False)
        _observed(packer, 4, 320_000)  # 80,000 per batch on the chain
        estimator.seen.clear()
        rows, data, gas = packer.pack(s)
    assert estimator.seen == []  # no eth_estimateGas
    assert packer.predicted
    assert len(rows) == 11  # 11 * 80,000 <= 0.92 * 1,000,000 < 12 * 80,000
    assert gas == 880_000 and data == encode(rows)


def test_the_prediction_takes_the_larger_of_gas_per_batch_and_gas_per_entry(sessions):
    _store(sessions, 20)  # one entry each
    packer = Packer(RelayerConfig(gas_cap=1_000_000), Estimator())
    _observed(packer, 4, 320_000, entries=16)  # 80,000 per batch but 20,000 per entry
    with sessions() as s:
        rows, _, gas = packer.pack(s)
    assert (len(rows), gas) == (11, 880_000)  # by batches: one-entry batches cost more than 20,000
    packer = Packer(RelayerConfig(gas_cap=1_000_000), Estimator())
    _observed(packer, 8, 320_000, entries=2)  # 40,000 per batch, 160,000 per entry
    with sessions() as s:
        rows, _, gas = packer.pack(s)
    assert (len(rows), gas) == (5, 800_000)  # by entries: bigger batches than the receipt's


@pytest.mark.parametrize(
    "receipt",
    [
        {"gas_used": 330_000, "expected": 320_000},  # used more than predicted
        {"gas_used": 320_000, "reverted": True},  # reverted, or ran out of gas
    ],
)
def test_after_a_receipt_over_the_prediction_or_a_revert_the_next_pack_is_estimated(sessions, receipt):
    _store(sessions, 20)
    estimator = Estimator()
    packer = Packer(RelayerConfig(gas_cap=1_000_000), estimator)
    _observed(packer, 4, 320_000)
    with sessions() as s:
        packer.pack(s)
        assert packer.predicted and estimator.seen == []
        _observed(packer, 4, **receipt)
        packer.pack(s)
        assert not packer.predicted and estimator.seen  # estimated again
        _observed(packer, 4, 320_000, expected=400_000)  # a good receipt under the estimate
        estimator.seen.clear()
        packer.pack(s)
    assert packer.predicted and estimator.seen == []


def test_a_receipt_with_skipped_batches_does_not_become_the_model(sessions):
    _store(sessions, 20)
    estimator = Estimator()
    packer = Packer(RelayerConfig(gas_cap=1_000_000), estimator)
    _observed(packer, 4, 40_000, applied=False)  # skipped batches cost little: no model from it
    with sessions() as s:
        packer.pack(s)
    assert not packer.predicted and estimator.seen


def test_the_model_needs_what_the_last_estimate_asked_over_what_its_receipt_used(sessions):
    """A transaction needs more gas than it uses (refunds come after it ran): the prediction
    scales the receipt's gasUsed by the last estimate's ratio to it."""
    _store(sessions, 20)
    packer = Packer(RelayerConfig(gas_cap=1_000_000), Estimator())
    with sessions() as s:
        rows, _, estimate = packer.pack(s)  # estimated: 100,000 per batch
        assert not packer.predicted
        _observed(packer, len(rows), estimate * 4 // 5, expected=estimate)  # it used 80% of the estimate
        rows, _, gas = packer.pack(s)
    assert packer.predicted
    assert (len(rows), gas) == (9, 900_000)  # 100,000 per batch again, not 80,000


def test_a_receipt_with_skipped_batches_raises_the_model_but_never_lowers_it(sessions):
    _store(sessions, 20)
    packer = Packer(RelayerConfig(gas_cap=1_000_000), Estimator())
    _observed(packer, 4, 320_000)  # 80,000 per batch
    packer.predicted = True  # the next receipts are of predicted packs
    _observed(packer, 4, 200_000, applied=False, expected=320_000)  # cheaper skips: kept at 80,000
    assert packer.model.per_batch == 80_000
    _observed(packer, 4, 400_000, applied=False, expected=420_000)  # dearer skips: 100,000
    assert packer.model.per_batch == 100_000
    with sessions() as s:
        rows, _, gas = packer.pack(s)
    assert packer.predicted and (len(rows), gas) == (9, 900_000)
