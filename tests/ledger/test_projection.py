"""The event projection alone: hand-built decoded events in, rows and counters out. No chain, no database."""

from __future__ import annotations

import struct

import pytest

from ledger.chain import LicenseKind
from ledger.errors import InconsistentEventError
from ledger.events import DecodedEvent
from ledger.indexer.projection import (
    BATCH_SKIPS,
    DISTRIBUTIONS,
    ESCROW_MOVEMENTS,
    LICENSE_PURCHASES,
    PAYEE_CREDITS,
    PLAY_BATCHES,
    SPLIT_SHARES,
    TERMS,
    TOKEN_TRANSFERS,
    WITHDRAWALS,
    WORK_TRANSFERS,
    WORK_URI_UPDATES,
    ZERO_ADDRESS,
    Projection,
    RangeRows,
    State,
    period_of,
)
from ledger.metadata import isrc_to_bytes12, make_data_uri
from ledger.playbatch import encode_entries, make_device_id

TS = 1793491200  # 2026-11-01T00:00:00Z
PERIOD = 202611
BLOCK = 40
TX = "0x" + "ab" * 32

OWNER = "0x" + "11" * 20
BUYER = "0x" + "22" * 20
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
CAROL = "0x" + "c0" * 20
LICENSEE = "0x" + "5e" * 20
DEVICE_KEY = "0x" + "de" * 20

WORK = 7
OTHER_WORK = 8
LICENSEE_INDEX = 3
DEVICE = make_device_id(LICENSEE_INDEX, 1)
RATE = 25


def event(contract: str, name: str, log_index: int = 0, block: int = BLOCK, **args) -> DecodedEvent:
    return DecodedEvent(contract, name, args, block, log_index, TX)


def ledger_event(name: str, log_index: int = 0, **args) -> DecodedEvent:
    return event("RoyaltyLedger", name, log_index, **args)


def records(*batches: tuple[int, int, int, int, int, dict[int, int]]) -> bytes:
    """The `records` bytes of a PlaysRecorded event: (device id, nonce, from, to, charged, {work: count}) each."""
    out = b""
    for device_id, nonce, from_time, to_time, charged, counts in batches:
        out += struct.pack(">QIII", device_id, nonce, from_time, to_time) + charged.to_bytes(12, "big")
        out += struct.pack(">H", len(counts)) + encode_entries(counts)
    return out


def plays_event(*batches: tuple[int, int, int, int, int, dict[int, int]], log_index: int = 5) -> DecodedEvent:
    return ledger_event("PlaysRecorded", log_index, records=records(*batches))


def apply(projection: Projection, e: DecodedEvent, rows: RangeRows, ts: int = TS) -> None:
    handler = projection.handler(e)
    assert handler is not None, f"no handler for {e.contract}.{e.name}"
    handler(e, rows, ts, period_of(ts))


@pytest.fixture
def state() -> State:
    """Work 7 and 8 registered, work 7 split 50/50 and licensed METERED to a licensee with one GB device."""
    return State(
        splits={WORK: ([ALICE, BOB], [5_000, 5_000])},
        licensee_by_index={LICENSEE_INDEX: LICENSEE},
        index_by_licensee={LICENSEE: LICENSEE_INDEX},
        metered={(LICENSEE, WORK): (RATE, TS + 1000, 0, 0)},
        territory={DEVICE: "GB"},
        works={WORK, OTHER_WORK},
    )


@pytest.fixture
def projection(state: State) -> Projection:
    return Projection(state)


@pytest.fixture
def rows() -> RangeRows:
    return RangeRows()


# ----------------------------------------------------------------------------- dispatch


def test_events_the_index_does_not_keep_have_no_handler(projection):
    approval = event("WorkRegistry", "Approval", owner=OWNER, approved=BUYER, tokenId=WORK)
    assert projection.handler(approval) is None


def test_the_same_event_name_on_another_contract_has_its_own_handler(projection, rows):
    apply(projection, event("Token", "Transfer", **{"from": LICENSEE, "to": BUYER, "value": 9}), rows)
    assert rows.rows[TOKEN_TRANSFERS][0]["amount"] == 9
    assert WORK_TRANSFERS not in rows.rows


# ----------------------------------------------------------------------------- works


def test_work_registered_inserts_the_work_with_its_metadata(projection, rows):
    uri = make_data_uri("Blue Harbour", "T-123.456.789-0")
    apply(
        projection,
        event(
            "WorkRegistry", "WorkRegistered", workId=9, owner=OWNER, isrc=isrc_to_bytes12("GB-ABC-26-00001"), uri=uri
        ),
        rows,
    )
    assert rows.works.new[9] == {
        "work_id": 9,
        "owner": OWNER,
        "registrant": OWNER,
        "isrc": "GBABC2600001",
        "iswc": "T-123.456.789-0",
        "title": "Blue Harbour",
        "uri": uri,
        "registered_uri": uri,
        "registered_block": BLOCK,
        "registered_at": TS,
        "split_locked": False,
        "split_locked_block": None,
        "plays": 0,
        "licensed_plays": 0,
        "accrued": 0,
        "distributed": 0,
    }


def test_work_registered_without_isrc_stores_none(projection, rows):
    apply(
        projection, event("WorkRegistry", "WorkRegistered", workId=9, owner=OWNER, isrc=bytes(12), uri="ipfs://x"), rows
    )
    assert rows.works.new[9]["isrc"] is None
    assert rows.works.new[9]["title"] is None


def test_work_registered_is_known_to_later_events(projection, state, rows):
    apply(projection, event("WorkRegistry", "WorkRegistered", workId=9, owner=OWNER, isrc=bytes(12), uri=""), rows)
    assert 9 in state.works
    apply(projection, event("WorkRegistry", "WorkURIUpdated", 1, workId=9, uri="ipfs://y"), rows)
    assert rows.works.new[9]["uri"] == "ipfs://y"


def test_work_uri_updated_sets_title_and_iswc_and_keeps_the_update(projection, rows):
    uri = make_data_uri("New Title", "T-000.000.001-0")
    apply(projection, event("WorkRegistry", "WorkURIUpdated", 2, workId=WORK, uri=uri), rows)
    assert rows.works.sets[WORK] == {"uri": uri, "title": "New Title", "iswc": "T-000.000.001-0"}
    assert rows.rows[WORK_URI_UPDATES] == [
        {"block_number": BLOCK, "log_index": 2, "tx_hash": TX, "timestamp": TS, "work_id": WORK, "uri": uri}
    ]


def test_work_uri_updated_for_an_unregistered_work_is_inconsistent(projection, rows):
    with pytest.raises(InconsistentEventError, match="never registered"):
        apply(projection, event("WorkRegistry", "WorkURIUpdated", workId=99, uri="ipfs://z"), rows)


def test_work_transfer_moves_the_owner(projection, rows):
    apply(projection, event("WorkRegistry", "Transfer", **{"from": OWNER, "to": BUYER, "tokenId": WORK}), rows)
    assert rows.works.sets[WORK] == {"owner": BUYER}
    assert rows.rows[WORK_TRANSFERS] == [
        {
            "block_number": BLOCK,
            "log_index": 0,
            "tx_hash": TX,
            "timestamp": TS,
            "work_id": WORK,
            "from_address": OWNER,
            "to_address": BUYER,
        }
    ]


def test_work_mint_is_recorded_but_leaves_the_owner_to_work_registered(projection, rows):
    apply(projection, event("WorkRegistry", "Transfer", **{"from": ZERO_ADDRESS, "to": OWNER, "tokenId": WORK}), rows)
    assert len(rows.rows[WORK_TRANSFERS]) == 1
    assert rows.works.sets == {}


def test_transfer_of_a_work_registered_in_the_same_range_updates_the_new_row(projection, rows):
    apply(projection, event("WorkRegistry", "WorkRegistered", workId=9, owner=OWNER, isrc=bytes(12), uri=""), rows)
    apply(projection, event("WorkRegistry", "Transfer", 1, **{"from": OWNER, "to": BUYER, "tokenId": 9}), rows)
    assert rows.works.new[9]["owner"] == BUYER
    assert rows.works.new[9]["registrant"] == OWNER
    assert rows.works.sets == {}


# ----------------------------------------------------------------------------- splits and payouts


def test_split_set_writes_one_share_row_per_payee_in_order(projection, rows):
    apply(projection, ledger_event("SplitSet", 3, workId=OTHER_WORK, payees=[ALICE, BOB], bps=[7_000, 3_000]), rows)
    assert [(r["position"], r["payee"], r["bps"], r["work_id"], r["log_index"]) for r in rows.rows[SPLIT_SHARES]] == [
        (0, ALICE, 7_000, OTHER_WORK, 3),
        (1, BOB, 3_000, OTHER_WORK, 3),
    ]


def test_split_set_replaces_the_split_later_distributions_use(projection, state, rows):
    apply(projection, ledger_event("SplitSet", workId=WORK, payees=[CAROL], bps=[10_000]), rows)
    assert state.splits[WORK] == ([CAROL], [10_000])
    apply(projection, ledger_event("Distributed", 1, workId=WORK, amount=500), rows)
    assert rows.payees == {CAROL: [500, 0]}


@pytest.mark.parametrize(
    "payees, bps",
    [
        ([], []),
        ([ALICE, BOB], [10_000]),
        ([ALICE, BOB], [5_000, 4_999]),
    ],
)
def test_split_set_that_is_not_a_valid_split_is_inconsistent(projection, rows, payees, bps):
    with pytest.raises(InconsistentEventError, match="not a valid split"):
        apply(projection, ledger_event("SplitSet", workId=WORK, payees=payees, bps=bps), rows)


def test_split_set_for_an_unregistered_work_is_inconsistent(projection, rows):
    with pytest.raises(InconsistentEventError, match="never registered"):
        apply(projection, ledger_event("SplitSet", workId=99, payees=[ALICE], bps=[10_000]), rows)


def test_split_locked_marks_the_work(projection, rows):
    apply(projection, ledger_event("SplitLocked", workId=WORK), rows)
    assert rows.works.sets[WORK] == {"split_locked": True, "split_locked_block": BLOCK}


def test_distributed_gives_the_rounding_remainder_to_the_first_payee(projection, state, rows):
    state.splits[WORK] = ([ALICE, BOB, CAROL], [3_333, 3_333, 3_334])
    apply(projection, ledger_event("Distributed", 4, workId=WORK, amount=100), rows)
    credits = rows.rows[PAYEE_CREDITS]
    assert [(c["position"], c["payee"], c["bps"], c["amount"]) for c in credits] == [
        (0, ALICE, 3_333, 34),
        (1, BOB, 3_333, 33),
        (2, CAROL, 3_334, 33),
    ]
    assert sum(c["amount"] for c in credits) == 100
    assert all(c["period"] == PERIOD and c["work_id"] == WORK for c in credits)


def test_distributed_records_the_distribution_in_its_period(projection, rows):
    apply(projection, ledger_event("Distributed", 4, workId=WORK, amount=1_001), rows)
    assert rows.rows[DISTRIBUTIONS] == [
        {
            "block_number": BLOCK,
            "log_index": 4,
            "tx_hash": TX,
            "timestamp": TS,
            "work_id": WORK,
            "amount": 1_001,
            "period": PERIOD,
        }
    ]


def test_distributed_adds_to_the_work_and_to_each_payee_credited(projection, rows):
    apply(projection, ledger_event("Distributed", 1, workId=WORK, amount=1_001), rows)
    apply(projection, ledger_event("Distributed", 2, workId=WORK, amount=10), rows)
    assert rows.works.deltas[WORK]["distributed"] == 1_011
    assert rows.payees == {ALICE: [501 + 5, 0], BOB: [500 + 5, 0]}


def test_distributed_before_any_split_is_inconsistent(projection, rows):
    with pytest.raises(InconsistentEventError, match="before any SplitSet"):
        apply(projection, ledger_event("Distributed", workId=OTHER_WORK, amount=10), rows)


def test_withdrawn_adds_to_the_payee_withdrawn_total(projection, rows):
    apply(projection, ledger_event("Withdrawn", 1, payee=ALICE, to=CAROL, amount=70), rows)
    apply(projection, ledger_event("Withdrawn", 2, payee=ALICE, to=ALICE, amount=5), rows)
    assert rows.payees == {ALICE: [0, 75]}
    assert [(w["payee"], w["to_address"], w["amount"]) for w in rows.rows[WITHDRAWALS]] == [
        (ALICE, CAROL, 70),
        (ALICE, ALICE, 5),
    ]


# ----------------------------------------------------------------------------- terms, licenses, escrow


def test_terms_set_is_recorded_as_offered(projection, rows):
    apply(
        projection,
        ledger_event("TermsSet", workId=WORK, kind=1, fee=300, ratePerPlay=RATE, duration=86_400, offered=True),
        rows,
    )
    assert rows.rows[TERMS] == [
        {
            "block_number": BLOCK,
            "log_index": 0,
            "tx_hash": TX,
            "timestamp": TS,
            "work_id": WORK,
            "kind": 1,
            "fee": 300,
            "rate_per_play": RATE,
            "duration": 86_400,
            "offered": True,
        }
    ]


def test_licensee_registered_is_indexed_both_ways(projection, state, rows):
    apply(projection, ledger_event("LicenseeRegistered", licensee=BUYER, licenseeIndex=4), rows)
    assert rows.licensees.new[4] == {
        "licensee_index": 4,
        "address": BUYER,
        "registered_block": BLOCK,
        "escrow_deposited": 0,
        "escrow_withdrawn": 0,
        "escrow_charged": 0,
    }
    assert state.licensee_by_index[4] == BUYER
    assert state.index_by_licensee[BUYER] == 4


def license_bought(
    log_index: int = 0,
    licensee: str = LICENSEE,
    work_id: int = OTHER_WORK,
    kind: int = int(LicenseKind.METERED),
    fee: int = 0,
    rate: int = 40,
    expiry: int = TS + 5000,
    prev_rate: int = 0,
    prev_expiry: int = 0,
) -> DecodedEvent:
    return ledger_event(
        "LicenseBought",
        log_index,
        licensee=licensee,
        workId=work_id,
        kind=kind,
        fee=fee,
        ratePerPlay=rate,
        expiry=expiry,
        prevRate=prev_rate,
        prevExpiry=prev_expiry,
    )


def test_license_bought_records_the_purchase_and_the_license(projection, rows):
    apply(projection, license_bought(fee=250), rows)
    assert rows.rows[LICENSE_PURCHASES] == [
        {
            "block_number": BLOCK,
            "log_index": 0,
            "tx_hash": TX,
            "timestamp": TS,
            "licensee": LICENSEE,
            "work_id": OTHER_WORK,
            "kind": int(LicenseKind.METERED),
            "fee": 250,
            "rate_per_play": 40,
            "expiry": TS + 5000,
            "prev_rate_per_play": 0,
            "prev_expiry": 0,
            "period": PERIOD,
        }
    ]
    assert rows.licenses[(LICENSEE, OTHER_WORK, int(LicenseKind.METERED))] == {
        "licensee": LICENSEE,
        "work_id": OTHER_WORK,
        "kind": int(LicenseKind.METERED),
        "rate_per_play": 40,
        "expiry": TS + 5000,
        "prev_rate_per_play": 0,
        "prev_expiry": 0,
        "updated_block": BLOCK,
        "fees_paid": 250,
    }


def test_license_bought_twice_in_a_range_keeps_the_latest_terms_and_adds_the_fees(projection, rows):
    apply(projection, license_bought(0, fee=250, rate=40, expiry=TS + 5000), rows)
    apply(projection, license_bought(1, fee=100, rate=45, expiry=TS + 9000), rows)
    lic = rows.licenses[(LICENSEE, OTHER_WORK, int(LicenseKind.METERED))]
    assert (lic["rate_per_play"], lic["expiry"], lic["fees_paid"]) == (45, TS + 9000, 350)
    assert len(rows.rows[LICENSE_PURCHASES]) == 2


def test_metered_license_bought_sets_the_rate_later_plays_pay(projection, state, rows):
    apply(projection, license_bought(rate=40, expiry=TS + 5000), rows)
    assert state.metered[(LICENSEE, OTHER_WORK)] == (40, TS + 5000, 0, 0)


def test_flat_license_bought_does_not_license_plays(projection, state, rows):
    apply(projection, license_bought(kind=int(LicenseKind.FLAT), fee=900), rows)
    assert (LICENSEE, OTHER_WORK) not in state.metered


def test_license_fee_accrues_to_the_work_and_the_fee_summary_without_territory(projection, rows):
    apply(projection, license_bought(fee=250), rows)
    apply(projection, license_bought(1, kind=int(LicenseKind.FLAT), fee=900), rows)
    assert rows.works.deltas[OTHER_WORK]["accrued"] == 1_150
    assert rows.stats == {(OTHER_WORK, PERIOD, ""): [0, 0, 0, 1_150]}


def test_free_license_accrues_nothing(projection, rows):
    apply(projection, license_bought(fee=0), rows)
    assert rows.works.deltas == {}
    assert rows.stats == {}


def test_license_bought_for_an_unregistered_work_is_inconsistent(projection, rows):
    with pytest.raises(InconsistentEventError, match="never registered"):
        apply(projection, license_bought(work_id=99), rows)


def test_escrow_deposit_adds_to_the_licensee_deposits(projection, rows):
    apply(projection, ledger_event("EscrowDeposited", 1, licensee=LICENSEE, **{"from": BUYER, "amount": 1_000}), rows)
    assert rows.licensees.deltas[LICENSEE_INDEX] == {
        "escrow_deposited": 1_000,
        "escrow_withdrawn": 0,
        "escrow_charged": 0,
    }
    assert [(m["licensee"], m["counterparty"], m["direction"], m["amount"]) for m in rows.rows[ESCROW_MOVEMENTS]] == [
        (LICENSEE, BUYER, "deposit", 1_000)
    ]


def test_escrow_withdrawal_adds_to_the_licensee_withdrawals(projection, rows):
    apply(projection, ledger_event("EscrowWithdrawn", 1, licensee=LICENSEE, to=CAROL, amount=300), rows)
    assert rows.licensees.deltas[LICENSEE_INDEX] == {
        "escrow_deposited": 0,
        "escrow_withdrawn": 300,
        "escrow_charged": 0,
    }
    assert [(m["counterparty"], m["direction"], m["amount"]) for m in rows.rows[ESCROW_MOVEMENTS]] == [
        (CAROL, "withdraw", 300)
    ]


@pytest.mark.parametrize(
    "name, args",
    [
        ("EscrowDeposited", {"licensee": BUYER, "from": BUYER, "amount": 1}),
        ("EscrowWithdrawn", {"licensee": BUYER, "to": BUYER, "amount": 1}),
    ],
)
def test_escrow_of_an_unregistered_licensee_is_inconsistent(projection, rows, name, args):
    with pytest.raises(InconsistentEventError, match="no LicenseeRegistered"):
        apply(projection, ledger_event(name, **args), rows)


# ----------------------------------------------------------------------------- devices


def test_device_registered_inserts_the_device_with_its_territory(projection, state, rows):
    device_id = make_device_id(LICENSEE_INDEX, 2)
    apply(
        projection,
        ledger_event("DeviceRegistered", deviceId=device_id, device=DEVICE_KEY, licensee=LICENSEE, territory=b"FR"),
        rows,
    )
    assert rows.devices.new[device_id] == {
        "device_id": device_id,
        "address": DEVICE_KEY,
        "licensee": LICENSEE,
        "territory": "FR",
        "registered_block": BLOCK,
        "registered_at": TS,
        "revoked": False,
        "revoked_block": None,
        "revoked_at": None,
    }
    assert state.territory[device_id] == "FR"


def test_device_revoked_updates_a_device_of_an_earlier_range(projection, rows):
    apply(projection, ledger_event("DeviceRevoked", deviceId=DEVICE, device=DEVICE_KEY, revokedAt=TS), rows)
    assert rows.devices.sets[DEVICE] == {"revoked": True, "revoked_block": BLOCK, "revoked_at": TS}


def test_device_registered_and_revoked_in_one_range_is_written_revoked(projection, rows):
    device_id = make_device_id(LICENSEE_INDEX, 2)
    apply(
        projection,
        ledger_event("DeviceRegistered", deviceId=device_id, device=DEVICE_KEY, licensee=LICENSEE, territory=b"FR"),
        rows,
    )
    apply(
        projection,
        event(
            "RoyaltyLedger", "DeviceRevoked", 0, block=BLOCK + 3, deviceId=device_id, device=DEVICE_KEY, revokedAt=TS
        ),
        rows,
    )
    assert (rows.devices.new[device_id]["revoked"], rows.devices.new[device_id]["revoked_block"]) == (True, BLOCK + 3)
    assert rows.devices.sets == {}


def test_device_revoked_keeps_its_territory_for_plays_the_chain_recorded(projection, rows):
    """The chain decides which plays count; a revoked device's recorded plays are still cut by its territory."""
    apply(projection, ledger_event("DeviceRevoked", deviceId=DEVICE, device=DEVICE_KEY, revokedAt=TS), rows)
    apply(projection, plays_event((DEVICE, 1, TS - 60, TS, 2 * RATE, {WORK: 2}), log_index=6), rows)
    assert [p[9] for p in rows.plays] == ["GB"]


# ----------------------------------------------------------------------------- plays


def test_licensed_plays_are_charged_at_the_license_rate(projection, rows):
    apply(projection, plays_event((DEVICE, 11, TS - 60, TS, 3 * RATE, {WORK: 3})), rows)
    assert rows.plays == [(BLOCK, 5, 0, WORK, DEVICE, 3, True, RATE, 3 * RATE, "GB", PERIOD)]


def test_plays_without_a_metered_license_are_recorded_unlicensed_and_free(projection, rows):
    apply(projection, plays_event((DEVICE, 11, TS - 60, TS, 0, {OTHER_WORK: 4})), rows)
    assert rows.plays == [(BLOCK, 5, 0, OTHER_WORK, DEVICE, 4, False, 0, 0, "GB", PERIOD)]


def test_plays_ending_after_the_license_expiry_are_unlicensed(projection, state, rows):
    state.metered[(LICENSEE, WORK)] = (RATE, TS - 1, 0, 0)
    apply(projection, plays_event((DEVICE, 11, TS - 60, TS, 0, {WORK: 3})), rows)
    assert rows.plays[0][6:9] == (False, 0, 0)


def test_plays_ending_at_the_license_expiry_are_licensed(projection, state, rows):
    state.metered[(LICENSEE, WORK)] = (RATE, TS, 0, 0)
    apply(projection, plays_event((DEVICE, 11, TS - 60, TS, 3 * RATE, {WORK: 3})), rows)
    assert rows.plays[0][6:9] == (True, RATE, 3 * RATE)


def test_a_license_of_another_licensee_does_not_license_the_plays(projection, state, rows):
    state.metered = {(BUYER, WORK): (RATE, TS + 1000)}
    apply(projection, plays_event((DEVICE, 11, TS - 60, TS, 0, {WORK: 3})), rows)
    assert rows.plays[0][6] is False


def test_plays_add_to_the_work_counters_and_the_period_territory_summary(projection, rows):
    apply(projection, plays_event((DEVICE, 11, TS - 60, TS, 3 * RATE, {WORK: 3, OTHER_WORK: 4})), rows)
    assert rows.works.deltas[WORK] == {"plays": 3, "licensed_plays": 3, "accrued": 3 * RATE, "distributed": 0}
    assert rows.works.deltas[OTHER_WORK] == {"plays": 4, "licensed_plays": 0, "accrued": 0, "distributed": 0}
    assert rows.stats == {(WORK, PERIOD, "GB"): [3, 3, 3 * RATE, 0], (OTHER_WORK, PERIOD, "GB"): [4, 0, 0, 0]}


def test_plays_charge_the_licensee_escrow(projection, rows):
    apply(
        projection,
        plays_event(
            (DEVICE, 11, TS - 60, TS, 3 * RATE, {WORK: 3}),
            (DEVICE, 12, TS - 30, TS, 2 * RATE, {WORK: 2, OTHER_WORK: 1}),
        ),
        rows,
    )
    assert rows.licensees.deltas[LICENSEE_INDEX]["escrow_charged"] == 5 * RATE


def test_play_batch_row_sums_its_entries_and_charge(projection, rows):
    apply(projection, plays_event((DEVICE, 11, TS - 60, TS, 3 * RATE, {WORK: 3, OTHER_WORK: 4})), rows)
    assert rows.rows[PLAY_BATCHES] == [
        {
            "block_number": BLOCK,
            "log_index": 5,
            "tx_hash": TX,
            "timestamp": TS,
            "batch_index": 0,
            "device_id": DEVICE,
            "licensee_index": LICENSEE_INDEX,
            "nonce": 11,
            "from_time": TS - 60,
            "to_time": TS,
            "charged": 3 * RATE,
            "entries": 2,
            "plays": 7,
            "period": PERIOD,
        }
    ]


def test_each_batch_of_an_event_gets_its_own_batch_index(projection, rows):
    apply(
        projection,
        plays_event((DEVICE, 11, TS - 60, TS, 0, {OTHER_WORK: 1}), (DEVICE, 12, TS - 30, TS, 0, {OTHER_WORK: 2})),
        rows,
    )
    assert [(p[2], p[5]) for p in rows.plays] == [(0, 1), (1, 2)]
    assert [(b["batch_index"], b["nonce"]) for b in rows.rows[PLAY_BATCHES]] == [(0, 11), (1, 12)]


def test_plays_are_in_the_period_of_the_block_not_of_the_batch(projection, rows):
    apply(
        projection,
        plays_event((DEVICE, 11, TS - 86_400 * 40, TS - 86_400 * 35, 0, {OTHER_WORK: 1})),
        rows,
        ts=TS + 86_400 * 31,
    )
    assert rows.plays[0][10] == 202612


@pytest.mark.parametrize("charged", [3 * RATE - 1, 3 * RATE + 1, 0])
def test_charged_total_that_differs_from_the_licenses_is_inconsistent(projection, rows, charged):
    with pytest.raises(InconsistentEventError, match=f"says it charged {charged}, .* give {3 * RATE}"):
        apply(projection, plays_event((DEVICE, 11, TS - 60, TS, charged, {WORK: 3, OTHER_WORK: 4})), rows)


def test_unlicensed_plays_claimed_as_charged_are_inconsistent(projection, rows):
    with pytest.raises(InconsistentEventError, match="give 0"):
        apply(projection, plays_event((DEVICE, 11, TS - 60, TS, 5, {OTHER_WORK: 4})), rows)


def test_plays_of_an_unregistered_device_are_inconsistent(projection, rows):
    stranger = make_device_id(LICENSEE_INDEX, 9)
    with pytest.raises(InconsistentEventError, match="no DeviceRegistered"):
        apply(projection, plays_event((stranger, 11, TS - 60, TS, 0, {OTHER_WORK: 1})), rows)


def test_plays_of_a_device_of_an_unregistered_licensee_are_inconsistent(projection, state, rows):
    orphan = make_device_id(LICENSEE_INDEX + 1, 1)
    state.territory[orphan] = "GB"
    with pytest.raises(InconsistentEventError, match="no DeviceRegistered"):
        apply(projection, plays_event((orphan, 11, TS - 60, TS, 0, {OTHER_WORK: 1})), rows)


def test_plays_of_an_unregistered_work_are_recorded_as_an_anomaly_and_indexing_goes_on(projection, rows):
    """The contract applies (and charges nothing for) plays of a work id nobody registered; the
    index must not stop on them: an anomaly row, no play row, and the rest of the batch counts."""
    from ledger.indexer.projection import ANOMALIES

    apply(projection, plays_event((DEVICE, 11, TS - 60, TS, 2 * RATE, {WORK: 2, 99: 1})), rows)
    (anomaly,) = rows.rows[ANOMALIES]
    assert anomaly["kind"] == "PlaysOfUnknownWork" and "work 99" in anomaly["detail"]
    assert [p[3] for p in rows.plays] == [WORK]


def test_plays_are_charged_at_the_rate_of_the_period_they_ended_in(projection, rows):
    """After a renewal at another rate, a batch that ended in the previous period pays the old rate."""
    apply(projection, license_bought(work_id=WORK, rate=50, expiry=TS + 100, prev_rate=30, prev_expiry=TS), rows)
    apply(
        projection,
        plays_event(
            (DEVICE, 11, TS - 60, TS, 2 * 30, {WORK: 2}), (DEVICE, 12, TS + 1, TS + 50, 2 * 50, {WORK: 2}), log_index=5
        ),
        rows,
    )
    assert [p[7] for p in rows.plays] == [30, 50]


def test_batch_skipped_records_the_reason_by_name(projection, rows):
    apply(projection, ledger_event("BatchSkipped", 2, deviceId=DEVICE, nonce=12, reason=6), rows)
    assert rows.rows[BATCH_SKIPS] == [
        {
            "block_number": BLOCK,
            "log_index": 2,
            "tx_hash": TX,
            "timestamp": TS,
            "device_id": DEVICE,
            "nonce": 12,
            "reason": "InsufficientEscrow",
        }
    ]


def test_batch_skipped_with_an_unknown_reason_records_its_number(projection, rows):
    apply(projection, ledger_event("BatchSkipped", deviceId=DEVICE, nonce=12, reason=200), rows)
    assert rows.rows[BATCH_SKIPS][0]["reason"] == "200"


def test_batch_skipped_charges_nothing(projection, rows):
    apply(projection, ledger_event("BatchSkipped", deviceId=DEVICE, nonce=12, reason=0), rows)
    assert rows.plays == [] and rows.licensees.deltas == {} and rows.stats == {}


# ----------------------------------------------------------------------------- token


def test_token_transfer_is_recorded_with_its_amount(projection, rows):
    apply(projection, event("Token", "Transfer", 9, **{"from": BUYER, "to": LICENSEE, "value": 1_000}), rows)
    assert rows.rows[TOKEN_TRANSFERS] == [
        {
            "block_number": BLOCK,
            "log_index": 9,
            "tx_hash": TX,
            "timestamp": TS,
            "from_address": BUYER,
            "to_address": LICENSEE,
            "amount": 1_000,
        }
    ]


def test_token_transfer_changes_no_counter(projection, rows):
    apply(projection, event("Token", "Transfer", **{"from": BUYER, "to": LICENSEE, "value": 1_000}), rows)
    assert rows.payees == {} and rows.licensees.deltas == {} and rows.works.deltas == {}


def test_timestamp_cache_keeps_the_blocks_just_loaded_when_it_is_full(monkeypatch):
    """The cache is emptied before loading, never after: what was asked for is always there."""
    from types import SimpleNamespace

    from ledger.indexer import source

    class Node:  # answers eth_getBlock only (no JSON-RPC batches), timestamp = 1000 + number
        def batch_requests(self):
            raise RuntimeError("no batches")

        eth = SimpleNamespace(
            get_block=lambda n: {"timestamp": 1000 + n, "hash": n.to_bytes(32, "big"), "parentHash": bytes(32)}
        )

    from ledger.chain import ContractInfo, Deployment

    transfer = [
        {
            "type": "event",
            "name": "Transfer",
            "anonymous": False,
            "inputs": [
                {"name": "from", "type": "address", "indexed": True},
                {"name": "to", "type": "address", "indexed": True},
                {"name": "value", "type": "uint256", "indexed": False},
            ],
        }
    ]
    contracts = {
        name: ContractInfo("0x" + f"{i + 1:040x}", transfer if name == "TestStablecoin" else [])
        for i, name in enumerate(("TestStablecoin", "WorkRegistry", "RoyaltyLedger"))
    }
    deployment = Deployment(31337, 0, "0x" + "00" * 20, contracts)
    monkeypatch.setattr(source, "MAX_CACHED_TIMESTAMPS", 3)
    logs = source.LogSource(Node(), deployment, deployment.event_decoder())
    logs.load_timestamps([1, 2, 3])
    logs.load_timestamps([4, 5])
    assert logs.timestamps[4] == 1004 and logs.timestamps[5] == 1005
