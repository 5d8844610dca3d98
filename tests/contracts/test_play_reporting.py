"""PlayReporting: device-signed play batches, submitted many per call by anyone."""

import dataclasses
import struct

import brownie
import pytest
from brownie import chain, web3
from hexbytes import HexBytes

from contract_helpers import (
    ESCROW,
    METERED,
    RATE,
    Device,
    Reporter,
    err,
    events,
    new_key,
    raw_entries,
    reason,
    records_bytes,
    register_device,
    skips,
)
from ledger.playbatch import (
    PlayRecord,
    SignedBatch,
    batch_digest,
    decode_play_records,
    encode_entries,
    sign_batch,
    to_compact_signature,
)

# submitBatches(bytes data): selector, offset word, length word, then data.
DATA_OFFSET = 4 + 32 + 32
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture(scope="module")
def short_work(works, ledger, artist, split):
    """A work whose METERED license lasts 120 s, for expiry tests."""
    wid = works.registerWork("ipfs://short", b"\x00" * 12, {"from": artist}).events["WorkRegistered"]["workId"]
    ledger.setSplit(wid, split[0], split[1], [], [], {"from": artist})
    ledger.setTerms(wid, METERED, 0, 4, 120, True, {"from": artist})
    return wid


def state(ledger, licensees, work_ids):
    """Escrows, accruals and play counts: what a batch may change."""
    return (
        [ledger.escrowOf(a) for a in licensees],
        [ledger.accruedOf(w) for w in work_ids],
        [ledger.playsOf(w) for w in work_ids],
    )


def assert_skipped(tx, device, nonce, why):
    assert skips(tx) == [(device.device_id, nonce, reason(why))]
    assert "PlaysRecorded" not in tx.events
    assert tx.return_value == 0


def assert_skipped_silently(tx):
    """Finding 9: a batch not signed by a registered device is attributable to nobody, so it
    is skipped without a BatchSkipped event (anyone could forge one for any device)."""
    assert skips(tx) == []
    assert "PlaysRecorded" not in tx.events
    assert tx.return_value == 0


def sign_raw(ledger, device, nonce, from_time, to_time, entries):
    """A batch signed by the device exactly as given (no format checks)."""
    digest = batch_digest(chain.id, ledger.address, device.address, nonce, from_time, to_time, entries)
    sig = device.key.unsafe_sign_hash(digest)
    return SignedBatch(device.address, nonce, from_time, to_time, entries, to_compact_signature(sig.r, sig.s, sig.v))


# --- digest and the happy path ---------------------------------------------------------------


def test_playBatchDigest_matches_digest_computed_with_eth_account(ledger, device, work_id):
    entries = encode_entries({work_id: 3, work_id + 7: 65_535})
    args = (device.address, 4_000_000_000, 1_700_000_000, 1_700_003_600, entries)

    on_chain = bytes(HexBytes(ledger.playBatchDigest(*args)))

    assert on_chain == batch_digest(chain.id, ledger.address, *args)


def test_submitBatches_applies_batch_signed_in_python(ledger, reporter, device, licensee, work_id, relayer):
    batch = reporter.sign(device, 1, encode_entries({work_id: 7}))

    tx = reporter.submit([(device, batch)])

    assert tx.return_value == 1
    assert skips(tx) == []
    assert decode_play_records(records_bytes(tx)) == [
        PlayRecord(device.device_id, 1, batch.from_time, batch.to_time, 7 * RATE, [(work_id, 7)])
    ]
    assert ledger.escrowOf(licensee) == ESCROW - 7 * RATE
    assert ledger.accruedOf(work_id) == 7 * RATE
    assert ledger.playsOf(work_id) == 7
    assert ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_records_unlicensed_plays_without_charge(ledger, reporter, device, licensee, work2_id):
    # work2 offers METERED terms but the licensee bought none; work 999 does not exist.
    batch = reporter.sign(device, 1, encode_entries({work2_id: 9, 999: 2}))

    tx = reporter.submit([(device, batch)])

    [record] = decode_play_records(records_bytes(tx))
    assert record.charged == 0
    assert record.entries == [(work2_id, 9), (999, 2)]
    assert ledger.escrowOf(licensee) == ESCROW
    assert ledger.accruedOf(work2_id) == 0
    assert ledger.playsOf(work2_id) == 0
    assert ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_charges_only_licensed_entries_of_a_batch(ledger, reporter, device, licensee, work_id, work2_id):
    batch = reporter.sign(device, 1, encode_entries({work_id: 5, work2_id: 4}))

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 5 * RATE
    assert ledger.escrowOf(licensee) == ESCROW - 5 * RATE
    assert (ledger.playsOf(work_id), ledger.playsOf(work2_id)) == (5, 0)


def test_submitBatches_treats_batch_ending_at_expiry_as_licensed(ledger, reporter, device, licensee, short_work):
    expiry = ledger.buyLicense(short_work, METERED, 0, 4, 0, {"from": licensee}).return_value
    batch = reporter.sign(device, 1, encode_entries({short_work: 3}), to_time=expiry)

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 12
    assert ledger.accruedOf(short_work) == 12


def test_submitBatches_treats_batch_ending_after_expiry_as_unlicensed(ledger, reporter, device, licensee, short_work):
    expiry = ledger.buyLicense(short_work, METERED, 0, 4, 0, {"from": licensee}).return_value
    batch = reporter.sign(device, 1, encode_entries({short_work: 3}), to_time=expiry + 1)

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 0
    assert ledger.accruedOf(short_work) == 0
    assert ledger.escrowOf(licensee) == ESCROW


def test_buyLicense_again_extends_the_licensed_play_window(ledger, reporter, device, licensee, short_work):
    first = ledger.buyLicense(short_work, METERED, 0, 4, 0, {"from": licensee}).return_value
    ledger.buyLicense(short_work, METERED, 0, 4, 0, {"from": licensee})
    batch = reporter.sign(device, 1, encode_entries({short_work: 3}), to_time=first + 100)

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 12


def test_submitBatches_charges_rate_of_purchase_after_terms_change(ledger, reporter, device, licensee, artist, work_id):
    ledger.setTerms(work_id, METERED, 0, RATE * 3, 86_400, True, {"from": artist})
    batch = reporter.sign(device, 1, encode_entries({work_id: 10}))

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 10 * RATE
    assert ledger.escrowOf(licensee) == ESCROW - 10 * RATE


def test_submitBatches_applies_batches_of_several_licensees(
    ledger, reporter, device, device2, licensee, licensee2, work_id
):
    b1 = reporter.sign(device, 1, encode_entries({work_id: 2}))
    b2 = reporter.sign(device2, 1, encode_entries({work_id: 3}))

    tx = reporter.submit([(device, b1), (device2, b2)])

    assert tx.return_value == 2
    assert [r.device_id for r in decode_play_records(records_bytes(tx))] == [device.device_id, device2.device_id]
    assert ledger.escrowOf(licensee) == ESCROW - 2 * RATE
    assert ledger.escrowOf(licensee2) == ESCROW - 3 * RATE
    assert ledger.accruedOf(work_id) == 5 * RATE
    assert ledger.playsOf(work_id) == 5


def test_submitBatches_charges_licensee_appearing_in_two_groups(ledger, reporter, device, device2, licensee, work_id):
    b1 = reporter.sign(device, 1, encode_entries({work_id: 2}))
    b2 = reporter.sign(device2, 1, encode_entries({work_id: 3}))
    b3 = reporter.sign(device, 2, encode_entries({work_id: 4}))

    tx = reporter.submit([(device, b1), (device2, b2), (device, b3)])

    assert tx.return_value == 3
    assert ledger.escrowOf(licensee) == ESCROW - 6 * RATE
    assert ledger.accruedOf(work_id) == 9 * RATE


def test_submitBatches_with_no_groups_applies_nothing(ledger, device, relayer):
    tx = ledger.submitBatches(b"\x04", {"from": relayer})

    assert tx.return_value == 0
    assert not events(tx, "PlaysRecorded") and not events(tx, "BatchSkipped")


def test_maxClockSkew_is_fifteen_minutes(ledger):
    assert ledger.maxClockSkew() == 900


# --- skipped batches --------------------------------------------------------------------------


def test_submitBatches_skips_unknown_device(ledger, reporter, device, licensee, work_id):
    ghost = Device(new_key(), device.licensee_index, 99)
    batch = reporter.sign(ghost, 1, encode_entries({work_id: 1}))

    tx = reporter.submit([(ghost, batch)])

    assert_skipped_silently(tx)
    assert ledger.escrowOf(licensee) == ESCROW


def test_submitBatches_skips_batch_ending_after_revocation(ledger, reporter, device, licensee, work_id):
    revoked_at = ledger.revokeDevice(device.device_id, {"from": licensee}).events["DeviceRevoked"]["revokedAt"]
    batch = reporter.sign(device, 1, encode_entries({work_id: 1}), to_time=revoked_at + 1)

    tx = reporter.submit([(device, batch)])

    assert_skipped(tx, device, 1, "DeviceRevoked")
    assert ledger.escrowOf(licensee) == ESCROW


def test_submitBatches_skips_batch_starting_after_it_ends(ledger, reporter, device, work_id):
    now = chain.time()
    batch = sign_raw(ledger, device, 1, now - 99, now - 100, encode_entries({work_id: 1}))

    tx = reporter.submit([(device, batch)])

    assert_skipped(tx, device, 1, "BadTimeRange")
    assert not ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_skips_batch_ending_beyond_clock_skew(ledger, reporter, device, work_id):
    to_time = chain.time() + 900 + 600
    batch = reporter.sign(device, 1, encode_entries({work_id: 1}), to_time - 60, to_time)

    tx = reporter.submit([(device, batch)])

    assert_skipped(tx, device, 1, "BadTimeRange")
    assert not ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_skips_replayed_nonce(ledger, reporter, device, licensee, work_id):
    batch = reporter.sign(device, 1, encode_entries({work_id: 4}))
    reporter.submit([(device, batch)])
    before = state(ledger, [licensee], [work_id])

    tx = reporter.submit([(device, batch)])

    assert_skipped(tx, device, 1, "NonceUsed")
    assert state(ledger, [licensee], [work_id]) == before


def test_submitBatches_skips_replay_within_one_call(ledger, reporter, device, licensee, work_id):
    batch = reporter.sign(device, 1, encode_entries({work_id: 4}))

    tx = reporter.submit([(device, batch), (device, batch)])

    assert tx.return_value == 1
    assert skips(tx) == [(device.device_id, 1, reason("NonceUsed"))]
    assert ledger.escrowOf(licensee) == ESCROW - 4 * RATE


def test_submitBatches_accepts_nonce_far_below_highest_used(ledger, reporter, device, work_id):
    # Finding 5: no window. A nonce 2**20 below the highest one used is still usable, once.
    reporter.submit([(device, reporter.sign(device, 2**20 + 36, encode_entries({work_id: 1})))])
    assert not ledger.isNonceUsed(device.device_id, 36)

    tx = reporter.submit([(device, reporter.sign(device, 36, encode_entries({work_id: 1})))])

    assert tx.return_value == 1
    assert ledger.isNonceUsed(device.device_id, 36)
    assert ledger.nonceBitmap(device.address, 0) == 1 << 36


def test_submitBatches_skips_batch_signed_by_other_key(ledger, reporter, device, licensee, work_id):
    batch = reporter.sign(device, 1, encode_entries({work_id: 4}), key=new_key())

    tx = reporter.submit([(device, batch)])

    assert_skipped_silently(tx)
    assert ledger.escrowOf(licensee) == ESCROW
    assert not ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_skips_batch_with_tampered_entry(ledger, reporter, device, licensee, work_id):
    signed = reporter.sign(device, 1, encode_entries({work_id: 4}))
    tampered = dataclasses.replace(signed, entries=encode_entries({work_id: 3}))

    tx = reporter.submit([(device, tampered)])

    assert_skipped_silently(tx)
    assert ledger.escrowOf(licensee) == ESCROW
    assert not ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_skips_high_s_twin_of_valid_signature(ledger, reporter, device, licensee, work_id):
    # (r, n - s) with the other y parity recovers the same key; only low s is accepted.
    signed = reporter.sign(device, 1, encode_entries({work_id: 4}))
    r, vs = signed.signature[:32], int.from_bytes(signed.signature[32:], "big")
    y, s = vs >> 255, vs & ((1 << 255) - 1)
    twin = r + (((1 - y) << 255) | (SECP256K1_N - s)).to_bytes(32, "big")

    tx = reporter.submit([(device, dataclasses.replace(signed, signature=twin))])

    assert_skipped_silently(tx)
    assert ledger.escrowOf(licensee) == ESCROW
    assert reporter.submit([(device, signed)]).return_value == 1


def test_submitBatches_skips_batch_signed_for_another_ledger(ledger, reporter, device, licensee, work_id):
    now = chain.time()
    other = sign_batch(device.key, chain.id, "0x" + "11" * 20, 1, now - 120, now - 60, encode_entries({work_id: 4}))

    tx = reporter.submit([(device, other)])

    assert_skipped_silently(tx)
    assert ledger.escrowOf(licensee) == ESCROW


def test_submitBatches_skips_batch_signed_for_another_chain(ledger, reporter, device, licensee, work_id):
    now = chain.time()
    other = sign_batch(device.key, chain.id + 1, ledger.address, 1, now - 120, now - 60, encode_entries({work_id: 4}))

    tx = reporter.submit([(device, other)])

    assert_skipped_silently(tx)
    assert ledger.escrowOf(licensee) == ESCROW


@pytest.mark.parametrize(
    "pairs",
    [
        pytest.param("unsorted", id="unsorted"),
        pytest.param("duplicate", id="duplicate"),
        pytest.param("zero", id="zero_count"),
        pytest.param("empty", id="no_entries"),
    ],
)
def test_submitBatches_skips_malformed_entries(ledger, reporter, device, licensee, work_id, work2_id, pairs):
    entries = {
        "unsorted": raw_entries([(work2_id, 1), (work_id, 1)]),
        "duplicate": raw_entries([(work_id, 1), (work_id, 2)]),
        "zero": raw_entries([(work_id, 2), (work2_id, 0)]),
        "empty": b"",
    }[pairs]
    batch = reporter.sign(device, 1, entries)
    before = state(ledger, [licensee], [work_id, work2_id])

    tx = reporter.submit([(device, batch)])

    assert_skipped(tx, device, 1, "MalformedEntries")
    assert state(ledger, [licensee], [work_id, work2_id]) == before
    assert not ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_skips_batch_escrow_cannot_pay(ledger, reporter, device, licensee, work_id):
    batch = reporter.sign(device, 1, encode_entries({work_id: ESCROW // RATE + 1}))

    tx = reporter.submit([(device, batch)])

    assert_skipped(tx, device, 1, "InsufficientEscrow")
    assert ledger.escrowOf(licensee) == ESCROW
    assert ledger.accruedOf(work_id) == 0
    assert ledger.playsOf(work_id) == 0
    assert not ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_skips_second_batch_when_first_used_the_escrow(ledger, reporter, device, licensee, work_id):
    half = ESCROW // RATE // 2 + 1  # each batch is payable alone, not both
    b1 = reporter.sign(device, 1, encode_entries({work_id: half}))
    b2 = reporter.sign(device, 2, encode_entries({work_id: half}))

    tx = reporter.submit([(device, b1), (device, b2)])

    assert tx.return_value == 1
    assert skips(tx) == [(device.device_id, 2, reason("InsufficientEscrow"))]
    assert ledger.escrowOf(licensee) == ESCROW - half * RATE
    assert ledger.playsOf(work_id) == half


def test_submitBatches_skipped_batches_change_nothing_while_others_apply(
    ledger, reporter, device, device2, licensee, licensee2, work_id, work2_id
):
    ledger.buyLicense(work2_id, METERED, 0, 3, 0, {"from": licensee})
    good = reporter.sign(device, 1, encode_entries({work_id: 2, work2_id: 5}))
    unpayable = reporter.sign(device, 2, encode_entries({work_id: 1, work2_id: 60_000}))
    forged = reporter.sign(device, 3, encode_entries({work_id: 9}), key=new_key())
    malformed = reporter.sign(device2, 1, raw_entries([(work2_id, 3), (work_id, 3)]))
    other = reporter.sign(device2, 2, encode_entries({work_id: 4}))

    tx = reporter.submit(
        [(device, good), (device, unpayable), (device, forged), (device2, malformed), (device2, other)]
    )

    assert tx.return_value == 2
    assert skips(tx) == [
        (device.device_id, 2, reason("InsufficientEscrow")),
        (device2.device_id, 1, reason("MalformedEntries")),
    ]  # the forgery: no event
    records = decode_play_records(records_bytes(tx))
    assert [(r.device_id, r.nonce, r.charged) for r in records] == [
        (device.device_id, 1, 2 * RATE + 5 * 3),
        (device2.device_id, 2, 4 * RATE),
    ]
    assert state(ledger, [licensee, licensee2], [work_id, work2_id]) == (
        [ESCROW - 2 * RATE - 15, ESCROW - 4 * RATE],
        [6 * RATE, 15],
        [6, 5],
    )
    assert [ledger.isNonceUsed(device.device_id, n) for n in (1, 2, 3)] == [True, False, False]
    assert [ledger.isNonceUsed(device2.device_id, n) for n in (1, 2)] == [False, True]


def test_submitBatches_accepts_unpayable_batch_after_top_up_with_same_nonce(
    ledger, reporter, device, licensee, work_id
):
    plays = ESCROW // RATE + 50
    batch = reporter.sign(device, 1, encode_entries({work_id: plays}))
    assert skips(reporter.submit([(device, batch)])) == [(device.device_id, 1, reason("InsufficientEscrow"))]

    ledger.deposit(50 * RATE, {"from": licensee})
    tx = reporter.submit([(device, batch)])

    assert tx.return_value == 1
    assert ledger.escrowOf(licensee) == 0
    assert ledger.accruedOf(work_id) == plays * RATE
    assert ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_accepts_unordered_nonces_once_each(ledger, reporter, device, licensee, work_id):
    nonces = [5, 2, 9, 3, 0]
    for n in nonces:
        tx = reporter.submit([(device, reporter.sign(device, n, encode_entries({work_id: 1})))])
        assert tx.return_value == 1

    assert [ledger.isNonceUsed(device.device_id, n) for n in range(11)] == [n in nonces for n in range(11)]
    replays = [(device, reporter.sign(device, n, encode_entries({work_id: 1}))) for n in (2, 9, 4)]
    tx = reporter.submit(replays)
    assert tx.return_value == 1  # only nonce 4 is new
    assert [s[1] for s in skips(tx)] == [2, 9]
    assert ledger.playsOf(work_id) == 6


# --- malformed calls --------------------------------------------------------------------------


def test_submitBatches_reverts_on_empty_data(ledger, relayer):
    with brownie.reverts(err("MalformedBatchData(uint256)", 0)):
        ledger.submitBatches(b"", {"from": relayer})


def test_submitBatches_reverts_on_truncated_group_header(ledger, relayer):
    with brownie.reverts(err("MalformedBatchData(uint256)", DATA_OFFSET + 1)):
        ledger.submitBatches(b"\x04\x00\x00\x01", {"from": relayer})


def test_submitBatches_reverts_on_empty_group(ledger, relayer):
    with brownie.reverts(err("MalformedBatchData(uint256)", DATA_OFFSET + 1)):
        ledger.submitBatches(b"\x04" + struct.pack(">IH", 1, 0), {"from": relayer})


def test_submitBatches_reverts_on_truncated_batch(ledger, reporter, device, work_id, relayer):
    data = reporter.data([(device, reporter.sign(device, 1, encode_entries({work_id: 1})))])
    with brownie.reverts(err("MalformedBatchData(uint256)", DATA_OFFSET + 1 + 6)):
        ledger.submitBatches(data[:-1], {"from": relayer})


@pytest.mark.parametrize("bits", [3, 15, 17])
def test_submitBatches_reverts_on_bad_table_bits(ledger, relayer, bits):
    with brownie.reverts(err("BadTableBits(uint256)", bits)):
        ledger.submitBatches(bytes([bits]) + struct.pack(">IH", 1, 0), {"from": relayer})


def test_submitBatches_reverts_when_work_table_full(ledger, reporter, device):
    # 16 distinct works in a 2**4 table: the contract reverts with its hard-coded selector,
    # which must be that of WorkTableFull(uint256).
    batch = reporter.sign(device, 1, encode_entries({w: 1 for w in range(1, 17)}))
    with brownie.reverts(err("WorkTableFull(uint256)", 16)):
        reporter.submit([(device, batch)], table_bits=4)


def test_submitBatches_applies_same_works_in_a_larger_table(ledger, reporter, device):
    batch = reporter.sign(device, 1, encode_entries({w: 1 for w in range(1, 17)}))
    assert reporter.submit([(device, batch)], table_bits=5).return_value == 1


def test_submitBatches_applies_largest_table(ledger, reporter, device, work_id):
    # Finding 9: the largest tableBits accepted (14) can succeed within a transaction's gas.
    batch = reporter.sign(device, 1, encode_entries({work_id: 1}))
    tx = reporter.submit([(device, batch)], table_bits=14)
    assert tx.return_value == 1
    assert tx.gas_used < 16_777_216  # EIP-7825's cap on one transaction


def test_submitBatches_skips_batch_that_would_overflow_accrual_and_applies_others(
    ledger, token, reporter, device, device2, licensee, licensee2, artist, work_id, work2_id
):
    # Finding 8: the overflow skips the offending batch only; the call and other batches stand.
    fee = 2**56 - 1  # fills the work's 56-bit accrual
    token.mint(licensee, fee, {"from": licensee})
    ledger.setTerms(work_id, 0, fee, 0, 86_400, True, {"from": artist})
    ledger.buyLicense(work_id, 0, fee, 0, 0, {"from": licensee})
    ledger.buyLicense(work2_id, METERED, 0, 3, 0, {"from": licensee2})
    overflowing = reporter.sign(device, 1, encode_entries({work_id: 1}))
    fine = reporter.sign(device2, 1, encode_entries({work2_id: 2}))

    tx = reporter.submit([(device, overflowing), (device2, fine)])

    assert tx.return_value == 1
    assert skips(tx) == [(device.device_id, 1, reason("CounterOverflow"))]
    assert ledger.accruedOf(work_id) == fee
    assert ledger.escrowOf(licensee) == ESCROW
    assert not ledger.isNonceUsed(device.device_id, 1)
    assert ledger.accruedOf(work2_id) == 6


def test_registered_device_of_new_licensee_reports_plays(ledger, reporter, funded, outsider, work_id):
    # End to end for a fresh licensee: deposit, license, device, batch.
    ledger.deposit(1_000, {"from": outsider})
    ledger.buyLicense(work_id, METERED, 0, RATE, 0, {"from": outsider})
    dev = register_device(ledger, outsider, b"US")

    tx = reporter.submit([(dev, reporter.sign(dev, 0, encode_entries({work_id: 3})))])

    assert tx.return_value == 1
    assert ledger.escrowOf(outsider) == 1_000 - 3 * RATE


# --- review findings 4-8 on the play path --------------------------------------------------------


def test_submitBatches_charges_batch_played_before_revocation(ledger, reporter, device, licensee, work_id):
    # Finding 4: revoking the device cannot void plays it made while it was valid.
    batch = reporter.sign(device, 1, encode_entries({work_id: 7}))
    ledger.revokeDevice(device.device_id, {"from": licensee})

    tx = reporter.submit([(device, batch)])

    assert tx.return_value == 1
    assert ledger.escrowOf(licensee) == ESCROW - 7 * RATE
    assert ledger.accruedOf(work_id) == 7 * RATE


def test_submitBatches_charges_escrow_during_withdrawal_notice(ledger, reporter, device, licensee, work_id):
    # Finding 4: asking for the whole escrow back does not stop the batches already played.
    ledger.requestEscrowWithdrawal(ESCROW, {"from": licensee})
    batch = reporter.sign(device, 1, encode_entries({work_id: 9}))
    chain.sleep(ledger.ESCROW_NOTICE() // 2)

    assert reporter.submit([(device, batch)]).return_value == 1

    chain.sleep(ledger.ESCROW_NOTICE())
    with brownie.reverts(err("InsufficientEscrow(uint256,uint256)", ESCROW - 9 * RATE, ESCROW)):
        ledger.withdrawEscrow(ESCROW, licensee, {"from": licensee})
    ledger.withdrawEscrow(ESCROW - 9 * RATE, licensee, {"from": licensee})
    assert ledger.escrowOf(licensee) == 0
    assert ledger.accruedOf(work_id) == 9 * RATE


def test_submitBatches_keeps_unpayable_batch_usable_after_many_newer_nonces(
    ledger, reporter, device, licensee, work_id
):
    # Finding 4: a batch skipped for escrow survives any number of newer batches of its device.
    big = reporter.sign(device, 0, encode_entries({work_id: ESCROW // RATE + 1}))
    assert skips(reporter.submit([(device, big)])) == [(device.device_id, 0, reason("InsufficientEscrow"))]
    newer = [(device, reporter.sign(device, n, encode_entries({work_id: 1}))) for n in range(1, 71)]
    assert reporter.submit(newer).return_value == 70

    ledger.deposit(ESCROW, {"from": licensee})
    tx = reporter.submit([(device, big)])

    assert tx.return_value == 1
    assert ledger.playsOf(work_id) == 70 + ESCROW // RATE + 1


def test_submitBatches_in_any_order_by_anyone_leaves_every_batch_usable(
    ledger, reporter, device, outsider, licensee, work_id
):
    # Finding 5: a third party holding 70 signed batches submits the newest first, then the
    # rest newest to oldest, one per call. Under the 64-nonce window 6 of them died.
    batches = [reporter.sign(device, n, encode_entries({work_id: 1})) for n in range(70)]

    applied = sum(reporter.submit([(device, b)], sender=outsider).return_value for b in reversed(batches))

    assert applied == 70
    assert ledger.playsOf(work_id) == 70
    assert all(ledger.isNonceUsed(device.device_id, n) for n in range(70))


def test_submitBatches_applies_older_chunk_after_newer_once(ledger, reporter, device, licensee, work_id):
    # Finding 5 with the live chunk in the device slot (nonces 0-63 are chunk 0, 64-127 chunk 1,
    # ...): batches of older chunks after newer ones are used, each once, whoever sends them.
    order = [3, 200, 70, 5, 300, 199, 64, 2**32 - 1, 4]
    batches = {n: reporter.sign(device, n, encode_entries({work_id: 1})) for n in order}
    for n in order:
        assert reporter.submit([(device, batches[n])]).return_value == 1

    tx = reporter.submit([(device, batches[n]) for n in order])

    assert tx.return_value == 0
    assert [s[1:] for s in skips(tx)] == [(n, reason("NonceUsed")) for n in order]
    assert ledger.playsOf(work_id) == len(order)
    assert ledger.escrowOf(licensee) == ESCROW - len(order) * RATE
    used = set(order)
    assert [ledger.isNonceUsed(device.device_id, n) for n in range(320)] == [n in used for n in range(320)]
    words = [sum(1 << (n & 255) for n in order if n >> 8 == w) for w in (0, 1)]
    assert [ledger.nonceBitmap(device.address, w) for w in (0, 1)] == words
    assert ledger.nonceBitmap(device.address, 2**24 - 1) == 1 << 255


def _ledger_slots_read(ledger, tx) -> int:
    """How many of the ledger's storage slots a transaction read or wrote (prestate trace)."""
    pre = web3.provider.make_request("debug_traceTransaction", [tx.txid, {"tracer": "prestateTracer"}])["result"]
    return next(len(a.get("storage") or {}) for addr, a in pre.items() if addr.lower() == ledger.address.lower())


def test_submitBatches_batch_of_the_live_chunk_touches_no_nonce_bitmap_slot(ledger, reporter, device, work_id):
    # The device's current 64-nonce chunk lives in its slot: a batch of it reads the device
    # slot, the escrow, the license word and the work, nothing else; a later chunk archives the
    # live one (one more slot) and becomes live.
    def submit(n):
        return reporter.submit([(device, reporter.sign(device, n, encode_entries({work_id: 1})))])

    assert _ledger_slots_read(ledger, submit(0)) == 4
    assert _ledger_slots_read(ledger, submit(63)) == 4
    assert _ledger_slots_read(ledger, submit(64)) == 5  # chunk 0 goes to the archive
    assert _ledger_slots_read(ledger, submit(65)) == 4
    assert _ledger_slots_read(ledger, submit(1)) == 5  # an older chunk: its archive word
    assert ledger.nonceBitmap(device.address, 0) == (1 << 0) | (1 << 1) | (1 << 63) | (1 << 64) | (1 << 65)


def test_submitBatches_uses_each_nonce_once_across_chunks_within_one_call(ledger, reporter, device, work_id):
    order = [300, 4, 300, 129, 4, 63, 64, 129]
    tx = reporter.submit([(device, reporter.sign(device, n, encode_entries({work_id: 1}))) for n in order])

    assert tx.return_value == 5
    assert [s[1] for s in skips(tx)] == [300, 4, 129]
    assert [r.nonce for r in decode_play_records(records_bytes(tx))] == [300, 4, 129, 63, 64]


def test_revoking_keeps_the_keys_used_nonces_for_every_registration(
    ledger, reporter, device, device2, licensee, licensee2, work_id
):
    # Revocation moves the device's live chunk to the archive: the used nonces stay used, for
    # the revoked registration (late batches played before the revocation) and for a later
    # registration of the same key.
    for n in (1, 2, 130):
        assert reporter.submit([(device, reporter.sign(device, n, encode_entries({work_id: 1})))]).return_value == 1
    late = {n: reporter.sign(device, n, encode_entries({work_id: 1})) for n in (2, 3, 131, 132)}
    revoked_at = ledger.revokeDevice(device.device_id, {"from": licensee}).events["DeviceRevoked"]["revokedAt"]

    assert [ledger.isNonceUsed(device.device_id, n) for n in (1, 2, 3, 130, 131)] == [True, True, False, True, False]
    assert ledger.nonceBitmap(device.address, 0) == (1 << 1) | (1 << 2) | (1 << 130)
    assert list(ledger.deviceInfo(device.device_id))[2:] == [revoked_at, 0]
    tx = reporter.submit([(device, late[n]) for n in (2, 3, 131)])
    assert tx.return_value == 2
    assert skips(tx) == [(device.device_id, 2, reason("NonceUsed"))]

    moved = register_device(ledger, licensee2, b"FR", key=device.key)
    assert list(ledger.deviceInfo(moved.device_id))[2:] == [0, revoked_at]
    assert ledger.isNonceUsed(moved.device_id, 131) and not ledger.isNonceUsed(moved.device_id, 132)
    again = [
        (moved, reporter.sign(moved, n, encode_entries({work_id: 1}), to_time=revoked_at + 1)) for n in (3, 131, 133, 1)
    ]
    tx = reporter.submit(again)
    assert tx.return_value == 1
    assert [s[1:] for s in skips(tx)] == [(n, reason("NonceUsed")) for n in (3, 131, 1)]
    tx = reporter.submit([(device, late[132])])
    assert tx.return_value == 1
    assert ledger.nonceBitmap(device.address, 0) == sum(1 << n for n in (1, 2, 3, 130, 131, 132, 133))
    assert ledger.playsOf(work_id) == 3 + 2 + 1 + 1
    assert ledger.escrowOf(licensee2) == ESCROW - RATE


def test_reregistered_key_charges_each_batch_to_the_registration_it_was_played_under(
    ledger, reporter, device, device2, licensee, licensee2, work_id
):
    # Finding 6: a key revoked by one licensee and registered by another; batches of the first
    # registration stay the first licensee's, and cannot be charged to the second.
    old_batch = reporter.sign(device, 1, encode_entries({work_id: 2}))
    revoked_at = ledger.revokeDevice(device.device_id, {"from": licensee}).events["DeviceRevoked"]["revokedAt"]
    moved = register_device(ledger, licensee2, b"FR", key=device.key)
    new_batch = reporter.sign(moved, 2, encode_entries({work_id: 3}), to_time=revoked_at + 1)

    tx = reporter.submit([(moved, old_batch), (moved, new_batch)])

    assert skips(tx) == [(moved.device_id, 1, reason("DeviceRevoked"))]
    assert ledger.escrowOf(licensee2) == ESCROW - 3 * RATE
    tx = reporter.submit([(device, old_batch), (moved, new_batch), (device, new_batch)])
    assert tx.return_value == 1
    assert skips(tx) == [
        (moved.device_id, 2, reason("NonceUsed")),  # nonces are per key
        (device.device_id, 2, reason("DeviceRevoked")),
    ]
    assert ledger.escrowOf(licensee) == ESCROW - 2 * RATE


def test_submitBatches_charges_plays_at_rate_of_the_period_they_were_played_in(
    ledger, reporter, device, licensee, artist, work_id
):
    # Finding 7: the licensee renews at a higher rate; plays of the first period keep its rate,
    # even when their batch lands after the renewal.
    first_expiry = ledger.licenseOf(licensee, work_id, METERED)[1]
    early = reporter.sign(device, 1, encode_entries({work_id: 5}))
    ledger.setTerms(work_id, METERED, 0, RATE * 3, 30 * 86_400, True, {"from": artist})
    tx = ledger.buyLicense(work_id, METERED, 0, RATE * 3, 0, {"from": licensee})
    ev = tx.events["LicenseBought"]
    assert (ev["ratePerPlay"], ev["prevRate"], ev["prevExpiry"]) == (RATE * 3, RATE, first_expiry)
    chain.sleep(first_expiry - chain.time() + 3_600)
    late = reporter.sign(device, 2, encode_entries({work_id: 5}))

    tx = reporter.submit([(device, early), (device, late)])

    assert [r.charged for r in decode_play_records(records_bytes(tx))] == [5 * RATE, 5 * RATE * 3]
    assert ledger.escrowOf(licensee) == ESCROW - 20 * RATE


@pytest.fixture
def harness_scene(RoyaltyLedgerHarness, token, works, forwarder, deployer, artist, licensee, split, funded):
    """A harness ledger with a work (rate 1) whose play counter is two below its limit, and a
    funded, licensed device."""
    harness = RoyaltyLedgerHarness.deploy(token, works, forwarder, {"from": deployer})
    wid = works.registerWork("ipfs://hits", b"\x00" * 12, {"from": artist}).events["WorkRegistered"]["workId"]
    harness.setSplit(wid, split[0], split[1], [], [], {"from": artist})
    harness.setTerms(wid, METERED, 0, 1, 86_400, True, {"from": artist})
    token.approve(harness, 2**256 - 1, {"from": licensee})
    harness.deposit(ESCROW, {"from": licensee})
    harness.buyLicense(wid, METERED, 0, 1, 0, {"from": licensee})
    dev = register_device(harness, licensee)
    harness.forcePlays(wid, 2**40 - 3, {"from": deployer})
    return harness, wid, dev


def test_submitBatches_skips_batch_that_would_overflow_play_counter(harness_scene, relayer):
    # Finding 8: the 40-bit play counter is full; the batch that would pass it is skipped and
    # undone, the one that fits in the same call still applies.
    harness, wid, dev = harness_scene
    reporter = Reporter(harness, relayer)
    fits = reporter.sign(dev, 1, encode_entries({wid: 2}))
    too_many = reporter.sign(dev, 2, encode_entries({wid: 1}))

    tx = reporter.submit([(dev, fits), (dev, too_many)])

    assert tx.return_value == 1
    assert skips(tx) == [(dev.device_id, 2, reason("CounterOverflow"))]
    assert harness.playsOf(wid) == 2**40 - 1
    assert harness.accruedOf(wid) == 2
