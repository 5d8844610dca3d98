"""PlayReporting: device-signed play batches, submitted many per call by anyone."""
import dataclasses
import struct

import brownie
import pytest
from brownie import chain
from hexbytes import HexBytes

from contract_helpers import (
    ESCROW, METERED, RATE, Device, err, events, new_key, raw_entries, reason, records_bytes, register_device, skips,
)
from ledger.playbatch import PlayRecord, batch_digest, decode_play_records, encode_entries, sign_batch

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
    return ([ledger.escrowOf(a) for a in licensees],
            [ledger.accruedOf(w) for w in work_ids],
            [ledger.playsOf(w) for w in work_ids])


def assert_skipped(tx, device, nonce, why):
    assert skips(tx) == [(device.device_id, nonce, reason(why))]
    assert "PlaysRecorded" not in tx.events
    assert tx.return_value == 0


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
        PlayRecord(device.device_id, 1, batch.from_time, batch.to_time, 7 * RATE, [(work_id, 7)])]
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


def test_submitBatches_charges_only_licensed_entries_of_a_batch(ledger, reporter, device, licensee, work_id,
                                                                work2_id):
    batch = reporter.sign(device, 1, encode_entries({work_id: 5, work2_id: 4}))

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 5 * RATE
    assert ledger.escrowOf(licensee) == ESCROW - 5 * RATE
    assert (ledger.playsOf(work_id), ledger.playsOf(work2_id)) == (5, 0)


def test_submitBatches_treats_batch_ending_at_expiry_as_licensed(ledger, reporter, device, licensee, short_work):
    expiry = ledger.buyLicense(short_work, METERED, 0, 4, {"from": licensee}).return_value
    batch = reporter.sign(device, 1, encode_entries({short_work: 3}), to_time=expiry)

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 12
    assert ledger.accruedOf(short_work) == 12


def test_submitBatches_treats_batch_ending_after_expiry_as_unlicensed(ledger, reporter, device, licensee,
                                                                      short_work):
    expiry = ledger.buyLicense(short_work, METERED, 0, 4, {"from": licensee}).return_value
    batch = reporter.sign(device, 1, encode_entries({short_work: 3}), to_time=expiry + 1)

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 0
    assert ledger.accruedOf(short_work) == 0
    assert ledger.escrowOf(licensee) == ESCROW


def test_buyLicense_again_extends_the_licensed_play_window(ledger, reporter, device, licensee, short_work):
    first = ledger.buyLicense(short_work, METERED, 0, 4, {"from": licensee}).return_value
    ledger.buyLicense(short_work, METERED, 0, 4, {"from": licensee})
    batch = reporter.sign(device, 1, encode_entries({short_work: 3}), to_time=first + 100)

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 12


def test_submitBatches_charges_rate_of_purchase_after_terms_change(ledger, reporter, device, licensee, artist,
                                                                   work_id):
    ledger.setTerms(work_id, METERED, 0, RATE * 3, 86_400, True, {"from": artist})
    batch = reporter.sign(device, 1, encode_entries({work_id: 10}))

    tx = reporter.submit([(device, batch)])

    assert decode_play_records(records_bytes(tx))[0].charged == 10 * RATE
    assert ledger.escrowOf(licensee) == ESCROW - 10 * RATE


def test_submitBatches_applies_batches_of_several_licensees(ledger, reporter, device, device2, licensee, licensee2,
                                                            work_id):
    b1 = reporter.sign(device, 1, encode_entries({work_id: 2}))
    b2 = reporter.sign(device2, 1, encode_entries({work_id: 3}))

    tx = reporter.submit([(device, b1), (device2, b2)])

    assert tx.return_value == 2
    assert [r.device_id for r in decode_play_records(records_bytes(tx))] == [device.device_id, device2.device_id]
    assert ledger.escrowOf(licensee) == ESCROW - 2 * RATE
    assert ledger.escrowOf(licensee2) == ESCROW - 3 * RATE
    assert ledger.accruedOf(work_id) == 5 * RATE
    assert ledger.playsOf(work_id) == 5


def test_submitBatches_charges_licensee_appearing_in_two_groups(ledger, reporter, device, device2, licensee,
                                                                work_id):
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

    assert_skipped(tx, ghost, 1, "UnknownDevice")
    assert ledger.escrowOf(licensee) == ESCROW


def test_submitBatches_skips_revoked_device(ledger, reporter, device, licensee, work_id):
    ledger.revokeDevice(device.device_id, {"from": licensee})
    batch = reporter.sign(device, 1, encode_entries({work_id: 1}))

    tx = reporter.submit([(device, batch)])

    assert_skipped(tx, device, 1, "DeviceRevoked")
    assert ledger.escrowOf(licensee) == ESCROW


def test_submitBatches_skips_batch_starting_after_it_ends(ledger, reporter, device, work_id):
    now = chain.time()
    batch = dataclasses.replace(reporter.sign(device, 1, encode_entries({work_id: 1}), now - 100, now - 100),
                                from_time=now - 99)  # signature no longer matters: time is checked first

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


def test_submitBatches_skips_nonce_older_than_window(ledger, reporter, device, work_id):
    reporter.submit([(device, reporter.sign(device, 100, encode_entries({work_id: 1})))])
    assert ledger.isNonceUsed(device.device_id, 36)  # 100 - 64: out of the window
    assert not ledger.isNonceUsed(device.device_id, 37)

    tx = reporter.submit([(device, reporter.sign(device, 36, encode_entries({work_id: 1})))])

    assert_skipped(tx, device, 36, "NonceUsed")
    tx = reporter.submit([(device, reporter.sign(device, 37, encode_entries({work_id: 1})))])
    assert tx.return_value == 1


def test_submitBatches_skips_batch_signed_by_other_key(ledger, reporter, device, licensee, work_id):
    batch = reporter.sign(device, 1, encode_entries({work_id: 4}), key=new_key())

    tx = reporter.submit([(device, batch)])

    assert_skipped(tx, device, 1, "BadSignature")
    assert ledger.escrowOf(licensee) == ESCROW
    assert not ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_skips_batch_with_tampered_entry(ledger, reporter, device, licensee, work_id):
    signed = reporter.sign(device, 1, encode_entries({work_id: 4}))
    tampered = dataclasses.replace(signed, entries=encode_entries({work_id: 3}))

    tx = reporter.submit([(device, tampered)])

    assert_skipped(tx, device, 1, "BadSignature")
    assert ledger.escrowOf(licensee) == ESCROW
    assert not ledger.isNonceUsed(device.device_id, 1)


def test_submitBatches_skips_high_s_twin_of_valid_signature(ledger, reporter, device, licensee, work_id):
    # (r, n - s) with the other y parity recovers the same key; only low s is accepted.
    signed = reporter.sign(device, 1, encode_entries({work_id: 4}))
    r, vs = signed.signature[:32], int.from_bytes(signed.signature[32:], "big")
    y, s = vs >> 255, vs & ((1 << 255) - 1)
    twin = r + (((1 - y) << 255) | (SECP256K1_N - s)).to_bytes(32, "big")

    tx = reporter.submit([(device, dataclasses.replace(signed, signature=twin))])

    assert_skipped(tx, device, 1, "BadSignature")
    assert ledger.escrowOf(licensee) == ESCROW
    assert reporter.submit([(device, signed)]).return_value == 1


def test_submitBatches_skips_batch_signed_for_another_ledger(ledger, reporter, device, licensee, work_id):
    now = chain.time()
    other = sign_batch(device.key, chain.id, "0x" + "11" * 20, 1, now - 120, now - 60, encode_entries({work_id: 4}))

    tx = reporter.submit([(device, other)])

    assert_skipped(tx, device, 1, "BadSignature")
    assert ledger.escrowOf(licensee) == ESCROW


def test_submitBatches_skips_batch_signed_for_another_chain(ledger, reporter, device, licensee, work_id):
    now = chain.time()
    other = sign_batch(device.key, chain.id + 1, ledger.address, 1, now - 120, now - 60, encode_entries({work_id: 4}))

    tx = reporter.submit([(device, other)])

    assert_skipped(tx, device, 1, "BadSignature")
    assert ledger.escrowOf(licensee) == ESCROW


@pytest.mark.parametrize("pairs", [
    pytest.param("unsorted", id="unsorted"),
    pytest.param("duplicate", id="duplicate"),
    pytest.param("zero", id="zero_count"),
    pytest.param("empty", id="no_entries"),
])
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


def test_submitBatches_skipped_batches_change_nothing_while_others_apply(ledger, reporter, device, device2,
                                                                         licensee, licensee2, work_id, work2_id):
    ledger.buyLicense(work2_id, METERED, 0, 3, {"from": licensee})
    good = reporter.sign(device, 1, encode_entries({work_id: 2, work2_id: 5}))
    unpayable = reporter.sign(device, 2, encode_entries({work_id: 1, work2_id: 60_000}))
    forged = reporter.sign(device, 3, encode_entries({work_id: 9}), key=new_key())
    malformed = reporter.sign(device2, 1, raw_entries([(work2_id, 3), (work_id, 3)]))
    other = reporter.sign(device2, 2, encode_entries({work_id: 4}))

    tx = reporter.submit([(device, good), (device, unpayable), (device, forged), (device2, malformed),
                          (device2, other)])

    assert tx.return_value == 2
    assert skips(tx) == [(device.device_id, 2, reason("InsufficientEscrow")),
                         (device.device_id, 3, reason("BadSignature")),
                         (device2.device_id, 1, reason("MalformedEntries"))]
    records = decode_play_records(records_bytes(tx))
    assert [(r.device_id, r.nonce, r.charged) for r in records] == [
        (device.device_id, 1, 2 * RATE + 5 * 3), (device2.device_id, 2, 4 * RATE)]
    assert state(ledger, [licensee, licensee2], [work_id, work2_id]) == (
        [ESCROW - 2 * RATE - 15, ESCROW - 4 * RATE], [6 * RATE, 15], [6, 5])
    assert [ledger.isNonceUsed(device.device_id, n) for n in (1, 2, 3)] == [True, False, False]
    assert [ledger.isNonceUsed(device2.device_id, n) for n in (1, 2)] == [False, True]


def test_submitBatches_accepts_unpayable_batch_after_top_up_with_same_nonce(ledger, reporter, device, licensee,
                                                                            work_id):
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


@pytest.mark.parametrize("bits", [3, 17])
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


def test_submitBatches_reverts_when_work_accrual_would_overflow(ledger, token, reporter, device, licensee, artist,
                                                                 work_id):
    fee = 2**80 - 1  # fills the work's 80-bit accrual
    token.mint(licensee, fee, {"from": licensee})
    ledger.setTerms(work_id, 0, fee, 0, 86_400, True, {"from": artist})
    ledger.buyLicense(work_id, 0, fee, 0, {"from": licensee})
    batch = reporter.sign(device, 1, encode_entries({work_id: 1}))

    with brownie.reverts(err("WorkCounterOverflow(uint256)", work_id)):
        reporter.submit([(device, batch)])


def test_registered_device_of_new_licensee_reports_plays(ledger, reporter, funded, outsider, work_id):
    # End to end for a fresh licensee: deposit, license, device, batch.
    ledger.deposit(1_000, {"from": outsider})
    ledger.buyLicense(work_id, METERED, 0, RATE, {"from": outsider})
    dev = register_device(ledger, outsider, b"US")

    tx = reporter.submit([(dev, reporter.sign(dev, 0, encode_entries({work_id: 3})))])

    assert tx.return_value == 1
    assert ledger.escrowOf(outsider) == 1_000 - 3 * RATE
