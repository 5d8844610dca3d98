"""Payouts: splits, distribution of a work's accrual to payee balances, pull withdrawals."""

import brownie
import pytest
from brownie import ZERO_ADDRESS, accounts
from eth_abi import encode
from eth_utils import keccak

from contract_helpers import FLAT, METERED, err
from ledger.playbatch import pack_split, split_shares


@pytest.fixture(scope="module")
def bare_work(works, artist):
    """A work of the artist with no split and no terms."""
    return works.registerWork("ipfs://bare", b"\x00" * 12, {"from": artist}).events["WorkRegistered"]["workId"]


@pytest.fixture
def accrue(ledger, artist, licensee, funded):
    """Accrues `amount` to a work: the artist offers a FLAT license at that fee, licensee buys."""

    def _accrue(work, amount):
        ledger.setTerms(work, FLAT, amount, 0, 86_400, True, {"from": artist})
        ledger.buyLicense(work, FLAT, amount, 0, 0, {"from": licensee})

    return _accrue


def python_commitment(payees, bps):
    packed = b"".join(encode(["address"], [p]) for p in payees) + b"".join(encode(["uint16"], [b]) for b in bps)
    return int.from_bytes(keccak(packed), "big") >> 96  # the high 160 bits


def test_setSplit_stores_commitment_and_emits_split(ledger, bare_work, artist, split):
    tx = ledger.setSplit(bare_work, split[0], split[1], [], [], {"from": artist})

    ev = tx.events["SplitSet"]
    assert ev["workId"] == bare_work
    assert list(ev["payees"]) == split[0] and list(ev["bps"]) == split[1]
    assert ledger.splitCommitmentOf(bare_work) == python_commitment(*split)
    assert not ledger.isSplitLocked(bare_work)


def test_splitCommitment_matches_packed_hash_computed_in_python(ledger, split):
    assert ledger.splitCommitment(*split) == python_commitment(*split)


def test_splitCommitment_reverts_on_length_mismatch(ledger, split):
    with brownie.reverts(err("LengthMismatch(uint256,uint256)", 3, 2)):
        ledger.splitCommitment(split[0], split[1][:2])


def test_setSplit_reverts_with_no_payees(ledger, bare_work, artist):
    with brownie.reverts(err("NoPayees()")):
        ledger.setSplit(bare_work, [], [], [], [], {"from": artist})


def test_setSplit_reverts_with_too_many_payees(ledger, bare_work, artist):
    payees = [f"0x{i:040x}" for i in range(1, 34)]
    bps = [300] * 33
    with brownie.reverts(err("TooManyPayees(uint256)", 33)):
        ledger.setSplit(bare_work, payees, bps, [], [], {"from": artist})


def test_setSplit_accepts_thirty_two_payees(ledger, bare_work, artist):
    payees = [f"0x{i:040x}" for i in range(1, 33)]
    bps = [313] * 31 + [10_000 - 313 * 31]

    ledger.setSplit(bare_work, payees, bps, [], [], {"from": artist})

    assert ledger.splitCommitmentOf(bare_work) == python_commitment(payees, bps)


def test_setSplit_reverts_on_length_mismatch(ledger, bare_work, artist, split):
    with brownie.reverts(err("LengthMismatch(uint256,uint256)", 3, 2)):
        ledger.setSplit(bare_work, split[0], [5_000, 5_000], [], [], {"from": artist})


def test_setSplit_reverts_on_zero_address_payee(ledger, bare_work, artist, payees):
    # Ascending order puts a zero address first.
    with brownie.reverts(err("ZeroAddressPayee(uint256)", 0)):
        ledger.setSplit(bare_work, [ZERO_ADDRESS, payees[0]], [5_000, 5_000], [], [], {"from": artist})


def test_setSplit_reverts_on_duplicate_payee(ledger, bare_work, artist, payees):
    with brownie.reverts(err("DuplicatePayee(address)", payees[0].address)):
        ledger.setSplit(bare_work, [payees[0], payees[0], payees[1]], [4_000, 3_000, 3_000], [], [], {"from": artist})


def test_setSplit_reverts_on_payees_out_of_order(ledger, bare_work, artist, payees):
    with brownie.reverts(err("PayeesOutOfOrder(uint256)", 2)):
        ledger.setSplit(bare_work, [payees[0], payees[2], payees[1]], [4_000, 3_000, 3_000], [], [], {"from": artist})


def test_setSplit_reverts_on_zero_share(ledger, bare_work, artist, payees):
    with brownie.reverts(err("ZeroShare(uint256)", 1)):
        ledger.setSplit(bare_work, [payees[0], payees[1]], [10_000, 0], [], [], {"from": artist})


def test_setSplit_reverts_when_shares_do_not_total(ledger, bare_work, artist, payees):
    with brownie.reverts(err("SharesDoNotTotal(uint256)", 9_999)):
        ledger.setSplit(bare_work, [payees[0], payees[1]], [5_000, 4_999], [], [], {"from": artist})


def test_setSplit_reverts_for_non_owner(ledger, bare_work, outsider, split):
    with brownie.reverts(err("NotWorkOwner(uint256,address)", bare_work, outsider.address)):
        ledger.setSplit(bare_work, split[0], split[1], [], [], {"from": outsider})


def test_setSplit_reverts_when_split_is_locked(ledger, work_id, artist, split):
    ledger.lockSplit(work_id, {"from": artist})

    with brownie.reverts(err("SplitIsLocked(uint256)", work_id)):
        ledger.setSplit(work_id, split[0][:1], [10_000], split[0], split[1], {"from": artist})


def test_setSplit_pays_old_accrual_under_old_split(ledger, work_id, artist, split, payees, outsider, accrue):
    accrue(work_id, 1_000)
    new_payees, new_bps = [outsider.address, payees[0].address], [9_000, 1_000]
    if int(outsider.address, 16) > int(payees[0].address, 16):
        new_payees, new_bps = new_payees[::-1], new_bps[::-1]

    tx = ledger.setSplit(work_id, new_payees, new_bps, split[0], split[1], {"from": artist})

    assert tx.events["Distributed"]["amount"] == 1_000
    assert [ledger.balanceOf(p) for p in payees] == [500, 300, 200]
    assert ledger.balanceOf(outsider) == 0
    assert ledger.accruedOf(work_id) == 0
    # What accrues from now on is paid under the new split.
    accrue(work_id, 1_000)
    ledger.distribute(work_id, new_payees, new_bps, {"from": outsider})
    assert ledger.balanceOf(outsider) == 900
    assert ledger.balanceOf(payees[0]) == 600


def test_setSplit_reverts_on_wrong_current_split_while_accrual_pending(ledger, work_id, artist, split, accrue):
    accrue(work_id, 1_000)
    with brownie.reverts(err("SplitMismatch(uint256)", work_id)):
        ledger.setSplit(work_id, split[0][:1], [10_000], split[0][:1], [10_000], {"from": artist})


def test_lockSplit_locks_split_forever(ledger, work_id, artist):
    tx = ledger.lockSplit(work_id, {"from": artist})

    assert tx.events["SplitLocked"]["workId"] == work_id
    assert ledger.isSplitLocked(work_id)


def test_lockSplit_reverts_when_split_not_set(ledger, bare_work, artist):
    with brownie.reverts(err("SplitNotSet(uint256)", bare_work)):
        ledger.lockSplit(bare_work, {"from": artist})


def test_lockSplit_reverts_when_already_locked(ledger, work_id, artist):
    ledger.lockSplit(work_id, {"from": artist})
    with brownie.reverts(err("SplitIsLocked(uint256)", work_id)):
        ledger.lockSplit(work_id, {"from": artist})


def test_lockSplit_reverts_for_non_owner(ledger, work_id, outsider):
    with brownie.reverts(err("NotWorkOwner(uint256,address)", work_id, outsider.address)):
        ledger.lockSplit(work_id, {"from": outsider})


def test_distribute_credits_payees_and_is_callable_by_anyone(ledger, work_id, split, payees, outsider, accrue):
    accrue(work_id, 2_500)

    tx = ledger.distribute(work_id, split[0], split[1], {"from": outsider})

    assert tx.return_value == 2_500
    assert tx.events["Distributed"]["workId"] == work_id
    assert tx.events["Distributed"]["amount"] == 2_500
    assert [ledger.balanceOf(p) for p in payees] == split_shares(2_500, split[1]) == [1_250, 750, 500]
    assert ledger.accruedOf(work_id) == 0


def test_distribute_returns_zero_when_nothing_pending(ledger, work_id, split, outsider):
    tx = ledger.distribute(work_id, split[0], split[1], {"from": outsider})

    assert tx.return_value == 0
    assert "Distributed" not in tx.events


def test_distribute_reverts_when_split_not_set(ledger, bare_work, outsider, split):
    with brownie.reverts(err("SplitNotSet(uint256)", bare_work)):
        ledger.distribute(bare_work, split[0], split[1], {"from": outsider})


def test_distribute_reverts_on_split_other_than_stored(ledger, work_id, split, outsider, accrue):
    accrue(work_id, 1_000)
    with brownie.reverts(err("SplitMismatch(uint256)", work_id)):
        ledger.distribute(work_id, split[0], [3_000, 5_000, 2_000], {"from": outsider})


def test_distribute_gives_rounding_remainder_to_first_payee(ledger, bare_work, artist, payees, outsider, accrue):
    bps = [3_333, 3_333, 3_334]
    ledger.setSplit(bare_work, payees, bps, [], [], {"from": artist})
    accrue(bare_work, 10_001)

    ledger.distribute(bare_work, payees, bps, {"from": outsider})

    credited = [ledger.balanceOf(p) for p in payees]
    assert credited == [3_334, 3_333, 3_334] == split_shares(10_001, bps)
    assert sum(credited) == 10_001


def test_withdraw_sends_whole_balance_to_any_address(ledger, token, work_id, split, payees, outsider, accrue):
    accrue(work_id, 1_000)
    ledger.distribute(work_id, split[0], split[1], {"from": outsider})
    before = token.balanceOf(outsider)

    tx = ledger.withdraw(outsider, {"from": payees[0]})

    assert tx.return_value == 500
    ev = tx.events["Withdrawn"]
    assert (ev["payee"], ev["to"], ev["amount"]) == (payees[0], outsider, 500)
    assert token.balanceOf(outsider) == before + 500
    assert ledger.balanceOf(payees[0]) == 0


def test_withdraw_reverts_when_nothing_to_withdraw(ledger, payees):
    with brownie.reverts(err("NothingToWithdraw(address)", payees[0].address)):
        ledger.withdraw(payees[0], {"from": payees[0]})


def test_withdraw_reverts_to_zero_address(ledger, work_id, split, payees, outsider, accrue):
    accrue(work_id, 1_000)
    ledger.distribute(work_id, split[0], split[1], {"from": outsider})
    with brownie.reverts(err("ZeroAddressRecipient()")):
        ledger.withdraw(ZERO_ADDRESS, {"from": payees[0]})


def test_withdraw_by_anyone_else_cannot_take_a_payee_balance(
    ledger, token, work_id, split, payees, outsider, deployer, accrue
):
    accrue(work_id, 1_000)
    ledger.distribute(work_id, split[0], split[1], {"from": outsider})
    held = token.balanceOf(ledger)

    for thief in (outsider, deployer, accounts[1]):
        with brownie.reverts(err("NothingToWithdraw(address)", thief.address)):
            ledger.withdraw(thief, {"from": thief})

    assert [ledger.balanceOf(p) for p in payees] == [500, 300, 200]
    assert token.balanceOf(ledger) == held


def test_constructor_fixes_token_and_registry(ledger, token, works):
    assert ledger.token() == token
    assert ledger.works() == works


def test_ledger_abi_has_no_admin_functions(RoyaltyLedger):
    writes = {
        f["name"] for f in RoyaltyLedger.abi if f["type"] == "function" and f["stateMutability"] not in ("view", "pure")
    }
    assert writes == {
        "setSplit",
        "lockSplit",
        "distributePacked",
        "distribute",
        "withdraw",
        "setTerms",
        "buyLicense",
        "buyLicenses",
        "deposit",
        "depositWithPermit",
        "depositFor",
        "requestEscrowWithdrawal",
        "withdrawEscrow",
        "registerDevice",
        "registerDevices",
        "revokeDevice",
        "submitBatches",
    }


def test_deployer_cannot_move_money_or_change_works(ledger, works, token, work_id, device, licensee, deployer, split):
    held = token.balanceOf(ledger)
    with brownie.reverts(err("WithdrawalNotRequested(uint256,uint256)", 0, 1)):
        ledger.withdrawEscrow(1, deployer, {"from": deployer})
    with brownie.reverts(err("InsufficientEscrow(uint256,uint256)", 0, 1)):
        ledger.requestEscrowWithdrawal(1, {"from": deployer})
    with brownie.reverts(err("NotWorkOwner(uint256,address)", work_id, deployer.address)):
        ledger.setSplit(work_id, [deployer.address], [10_000], split[0], split[1], {"from": deployer})
    with brownie.reverts(err("NotWorkOwner(uint256,address)", work_id, deployer.address)):
        ledger.setTerms(work_id, METERED, 0, 0, 1, True, {"from": deployer})
    with brownie.reverts(err("NotDeviceLicensee(uint64,address)", device.device_id, deployer.address)):
        ledger.revokeDevice(device.device_id, {"from": deployer})
    with brownie.reverts(err("ERC721InsufficientApproval(address,uint256)", deployer.address, work_id)):
        works.transferFrom(works.ownerOf(work_id), deployer, work_id, {"from": deployer})
    assert token.balanceOf(ledger) == held
    assert ledger.escrowOf(licensee) > 0


def test_transferFrom_work_moves_split_and_terms_control_to_new_owner(ledger, works, work_id, artist, outsider, split):
    works.transferFrom(artist, outsider, work_id, {"from": artist})

    ledger.setTerms(work_id, METERED, 0, 20, 86_400, True, {"from": outsider})
    ledger.setSplit(work_id, [outsider.address], [10_000], split[0], split[1], {"from": outsider})
    assert tuple(ledger.termsOf(work_id, METERED)) == (0, 20, 86_400, True)
    with brownie.reverts(err("NotWorkOwner(uint256,address)", work_id, artist.address)):
        ledger.setSplit(work_id, split[0], split[1], [outsider.address], [10_000], {"from": artist})
    with brownie.reverts(err("NotWorkOwner(uint256,address)", work_id, artist.address)):
        ledger.setTerms(work_id, METERED, 0, 1, 86_400, True, {"from": artist})
    with brownie.reverts(err("NotWorkOwner(uint256,address)", work_id, artist.address)):
        ledger.lockSplit(work_id, {"from": artist})


# --- finding 1: a split is validated in full, whatever its hash -----------------------------------


@pytest.fixture(scope="module")
def harness(RoyaltyLedgerHarness, token, works, forwarder, deployer):
    """The ledger with a back door that stores any split commitment (a stand-in for a hash
    collision, which costs ~2**80 hashes against 160 bits)."""
    return RoyaltyLedgerHarness.deploy(token, works, forwarder, {"from": deployer})


@pytest.fixture
def colliding_work(harness, works, token, artist, licensee, outsider, split, funded):
    """A work whose stored commitment is that of an invalid split (bps 65,535 each), with 1,000
    accrued, and 10,000 of another licensee's escrow in the same ledger."""
    wid = works.registerWork("ipfs://collide", b"\x00" * 12, {"from": artist}).events["WorkRegistered"]["workId"]
    harness.setSplit(wid, split[0], split[1], [], [], {"from": artist})
    harness.setTerms(wid, FLAT, 1_000, 0, 86_400, True, {"from": artist})
    token.approve(harness, 2**256 - 1, {"from": licensee})
    token.approve(harness, 2**256 - 1, {"from": outsider})
    harness.buyLicense(wid, FLAT, 1_000, 0, 0, {"from": licensee})
    harness.deposit(10_000, {"from": outsider})
    bad = (split[0], [65_535, 65_535, 65_535])
    harness.forceSplitCommitment(wid, python_commitment(*bad), {"from": artist})
    return wid, bad


def test_distribute_rejects_invalid_split_even_when_its_hash_is_committed(harness, token, colliding_work, outsider):
    wid, bad = colliding_work
    held = token.balanceOf(harness)

    with brownie.reverts(err("SharesDoNotTotal(uint256)", 3 * 65_535)):
        harness.distribute(wid, *bad, {"from": outsider})

    assert [harness.balanceOf(p) for p in bad[0]] == [0, 0, 0]
    assert harness.accruedOf(wid) == 1_000
    assert token.balanceOf(harness) == held == harness.accruedOf(wid) + harness.escrowOf(outsider)


def test_setSplit_rejects_invalid_current_split_even_when_its_hash_is_committed(
    harness, colliding_work, artist, payees
):
    wid, bad = colliding_work
    with brownie.reverts(err("SharesDoNotTotal(uint256)", 3 * 65_535)):
        harness.setSplit(wid, [payees[0].address], [10_000], *bad, {"from": artist})


def test_splitCommitmentOf_holds_160_bits(ledger, work_id, split):
    committed = ledger.splitCommitmentOf(work_id)
    assert committed == python_commitment(*split)
    assert committed.bit_length() > 128  # not truncated to 128 bits (true for all but 2**-32 of splits)


def test_withdraw_reverts_to_the_ledger_itself(ledger, work_id, split, payees, outsider, accrue):
    # Finding 9: tokens sent to the ledger would be counted in no balance, stranded forever.
    accrue(work_id, 1_000)
    ledger.distribute(work_id, split[0], split[1], {"from": outsider})
    with brownie.reverts(err("RecipientIsLedger()")):
        ledger.withdraw(ledger, {"from": payees[0]})
    assert ledger.balanceOf(payees[0]) == 500


# --- distributePacked: one word per payee (payee << 96 | bps), same rules and credits ------------


def packed(payees, bps):
    """Packed words in the given order (pack_split sorts; these tests also need bad orders)."""
    return [(int(str(p), 16) << 96) | b for p, b in zip(payees, bps)]


def test_pack_split_sorts_and_packs(split):
    words = pack_split(list(reversed(split[0])), list(reversed(split[1])))
    assert words == packed(*split)
    assert [w >> 96 for w in words] == sorted(int(str(p), 16) for p in split[0])


def test_distributePacked_credits_as_distribute(ledger, work_id, split, payees, outsider, accrue):
    accrue(work_id, 2_500)

    tx = ledger.distributePacked(work_id, packed(*split), {"from": outsider})

    assert tx.return_value == 2_500
    assert tx.events["Distributed"]["workId"] == work_id
    assert tx.events["Distributed"]["amount"] == 2_500
    assert [ledger.balanceOf(p) for p in payees] == split_shares(2_500, split[1]) == [1_250, 750, 500]
    assert ledger.accruedOf(work_id) == 0


def test_distributePacked_gives_rounding_remainder_to_first_payee(ledger, bare_work, artist, payees, outsider, accrue):
    bps = [3_333, 3_333, 3_334]
    ledger.setSplit(bare_work, payees, bps, [], [], {"from": artist})
    accrue(bare_work, 10_001)
    ledger.distributePacked(bare_work, packed(payees, bps), {"from": outsider})
    credited = [ledger.balanceOf(p) for p in payees]
    assert credited == [3_334, 3_333, 3_334] == split_shares(10_001, bps)


def test_distributePacked_adds_to_existing_balances(ledger, work_id, split, payees, outsider, accrue):
    accrue(work_id, 1_000)
    ledger.distribute(work_id, split[0], split[1], {"from": outsider})
    accrue(work_id, 2_000)
    ledger.distributePacked(work_id, packed(*split), {"from": outsider})
    assert [ledger.balanceOf(p) for p in payees] == [1_500, 900, 600]


def test_distributePacked_single_payee(ledger, bare_work, artist, payees, outsider, accrue):
    ledger.setSplit(bare_work, [payees[0]], [10_000], [], [], {"from": artist})
    accrue(bare_work, 777)
    ledger.distributePacked(bare_work, packed([payees[0]], [10_000]), {"from": outsider})
    assert ledger.balanceOf(payees[0]) == 777


def test_distributePacked_returns_zero_when_nothing_pending(ledger, work_id, split, payees, outsider):
    tx = ledger.distributePacked(work_id, packed(*split), {"from": outsider})
    assert tx.return_value == 0
    assert "Distributed" not in tx.events
    assert [ledger.balanceOf(p) for p in payees] == [0, 0, 0]


def test_distributePacked_reverts_when_split_not_set(ledger, bare_work, outsider, split):
    with brownie.reverts(err("SplitNotSet(uint256)", bare_work)):
        ledger.distributePacked(bare_work, packed(*split), {"from": outsider})
    # an invalid split on a work without one: SplitNotSet first, as distribute
    with brownie.reverts(err("SplitNotSet(uint256)", bare_work)):
        ledger.distributePacked(bare_work, [], {"from": outsider})


def test_distributePacked_reverts_on_split_other_than_stored(ledger, work_id, split, outsider, accrue):
    accrue(work_id, 1_000)
    with brownie.reverts(err("SplitMismatch(uint256)", work_id)):
        ledger.distributePacked(work_id, packed(split[0], [3_000, 5_000, 2_000]), {"from": outsider})
    assert ledger.accruedOf(work_id) == 1_000


@pytest.mark.parametrize(
    "case",
    ["none", "too_many", "zero_payee", "duplicate", "out_of_order", "zero_share", "dirty", "sum"],
)
def test_distributePacked_rejects_an_invalid_split_with_the_precise_error(
    ledger, work_id, split, payees, outsider, accrue, case
):
    accrue(work_id, 1_000)
    p, b = list(split[0]), list(split[1])
    words = packed(p, b)
    expected = {
        "none": ([], err("NoPayees()")),
        "too_many": ([words[0] + i for i in range(33)], err("TooManyPayees(uint256)", 33)),
        "zero_payee": ([b[0]] + words[1:], err("ZeroAddressPayee(uint256)", 0)),
        "duplicate": ([words[0], words[0], words[2]], err("DuplicatePayee(address)", p[0])),
        "out_of_order": ([words[1], words[0], words[2]], err("PayeesOutOfOrder(uint256)", 1)),
        "zero_share": ([words[0] - b[0], words[1], words[2] + b[0]], err("ZeroShare(uint256)", 0)),
        "dirty": ([words[0] | (1 << 40), words[1], words[2]], err("DirtySplitWord(uint256)", 0)),
        "sum": ([words[0] + 1, words[1], words[2]], err("SharesDoNotTotal(uint256)", 10_001)),
    }[case]
    with brownie.reverts(expected[1]):
        ledger.distributePacked(work_id, expected[0], {"from": outsider})
    assert ledger.accruedOf(work_id) == 1_000
    assert [ledger.balanceOf(x) for x in payees] == [0, 0, 0]


def test_distributePacked_rejects_invalid_split_even_when_its_hash_is_committed(
    harness, token, colliding_work, outsider
):
    # Finding 1 through the packed form: the commitment is the same as the two arrays', so the
    # colliding (invalid) split is found by its rules, not by its hash.
    wid, bad = colliding_work
    held = token.balanceOf(harness)

    with brownie.reverts(err("SharesDoNotTotal(uint256)", 3 * 65_535)):
        harness.distributePacked(wid, packed(*bad), {"from": outsider})

    assert [harness.balanceOf(p) for p in bad[0]] == [0, 0, 0]
    assert harness.accruedOf(wid) == 1_000
    assert token.balanceOf(harness) == held


def test_distributePacked_rejects_dirty_words_whose_unpacked_hash_is_committed(
    harness, colliding_work, artist, outsider, split
):
    # A word with bits 16..95 set unpacks to a share >= 2**16: committed (by the back door) or
    # not, it is refused before any credit sticks.
    wid, _ = colliding_work
    shares = [split[1][0] | (1 << 16), split[1][1], split[1][2]]
    words = b"".join(encode(["address"], [p]) for p in split[0]) + b"".join(encode(["uint256"], [b]) for b in shares)
    harness.forceSplitCommitment(wid, int.from_bytes(keccak(words), "big") >> 96, {"from": artist})
    with brownie.reverts(err("DirtySplitWord(uint256)", 0)):
        harness.distributePacked(wid, packed(split[0], shares), {"from": outsider})
    assert harness.accruedOf(wid) == 1_000


# --- withdraw's token call (TokenTransfer): SafeERC20's guarantees ------------------------------


@pytest.fixture
def quirky(QuirkyToken, RoyaltyLedger, works, forwarder, deployer, artist, payees, licensee, split):
    """A ledger on a QuirkyToken, with 1,000 distributed to the split (payees[0] holds 500)."""
    qt = QuirkyToken.deploy({"from": deployer})
    led = RoyaltyLedger.deploy(qt, works, forwarder, {"from": deployer})
    wid = works.registerWork("ipfs://quirky", b"\x00" * 12, {"from": artist}).events["WorkRegistered"]["workId"]
    led.setSplit(wid, split[0], split[1], [], [], {"from": artist})
    led.setTerms(wid, FLAT, 1_000, 0, 86_400, True, {"from": artist})
    qt.mint(licensee, 1_000, {"from": deployer})
    qt.approve(led, 1_000, {"from": licensee})
    led.buyLicense(wid, FLAT, 1_000, 0, 0, {"from": licensee})
    led.distributePacked(wid, packed(*split), {"from": artist})
    return qt, led


def test_withdraw_accepts_a_token_that_returns_nothing(quirky, payees, outsider):
    qt, led = quirky
    qt.setMode(2, {"from": outsider})
    tx = led.withdraw(outsider, {"from": payees[0]})
    assert tx.return_value == 500
    assert qt.balanceOf(outsider) == 500
    assert led.balanceOf(payees[0]) == 0


@pytest.mark.parametrize("mode", [1, 4])
def test_withdraw_reverts_when_the_token_returns_false_or_short(quirky, payees, outsider, mode):
    qt, led = quirky
    qt.setMode(mode, {"from": outsider})
    with brownie.reverts(err("SafeERC20FailedOperation(address)", qt.address)):
        led.withdraw(outsider, {"from": payees[0]})
    assert led.balanceOf(payees[0]) == 500


def test_withdraw_bubbles_the_token_revert(quirky, payees, outsider):
    qt, led = quirky
    qt.setMode(3, {"from": outsider})
    # As a call: the revert data comes back from eth_call (a mined revert's data would need a trace).
    with brownie.reverts("QuirkyToken: transfer refused"):
        led.withdraw.call(outsider, {"from": payees[0]})
    assert led.balanceOf(payees[0]) == 500


def test_withdraw_reverts_when_the_token_has_no_code(RoyaltyLedgerHarness, works, forwarder, deployer, outsider):
    # A "token" without code returns nothing from a successful call: refused, as SafeERC20 does.
    led = RoyaltyLedgerHarness.deploy(outsider, works, forwarder, {"from": deployer})
    led.forceBalance(outsider, 5, {"from": deployer})
    with brownie.reverts(err("SafeERC20FailedOperation(address)", outsider.address)):
        led.withdraw(deployer, {"from": outsider})
    assert led.balanceOf(outsider) == 5
