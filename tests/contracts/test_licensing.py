"""Licensing: terms per work and kind, licenses (fees accrue to the work), licensee escrow."""

import brownie
import pytest
from brownie import ZERO_ADDRESS, chain

from contract_helpers import FLAT, FLAT_DURATION, FLAT_FEE, METERED, METERED_DURATION, RATE, err


@pytest.fixture(scope="module")
def bare_work(works, artist):
    return works.registerWork("ipfs://bare", b"\x00" * 12, {"from": artist}).events["WorkRegistered"]["workId"]


def block_time(tx):
    return chain[tx.block_number].timestamp


def test_setTerms_stores_terms_and_emits_them(ledger, bare_work, artist):
    tx = ledger.setTerms(bare_work, METERED, 50, 7, 3_600, True, {"from": artist})

    ev = tx.events["TermsSet"]
    assert (ev["workId"], ev["kind"], ev["fee"], ev["ratePerPlay"], ev["duration"], ev["offered"]) == (
        bare_work,
        METERED,
        50,
        7,
        3_600,
        True,
    )
    assert tuple(ledger.termsOf(bare_work, METERED)) == (50, 7, 3_600, True)


def test_setTerms_zeroes_rate_of_flat_terms(ledger, bare_work, artist):
    tx = ledger.setTerms(bare_work, FLAT, 900, 7, 3_600, True, {"from": artist})

    assert tx.events["TermsSet"]["ratePerPlay"] == 0
    assert tuple(ledger.termsOf(bare_work, FLAT)) == (900, 0, 3_600, True)


def test_setTerms_reverts_on_zero_duration_when_offered(ledger, bare_work, artist):
    with brownie.reverts(err("ZeroDuration()")):
        ledger.setTerms(bare_work, METERED, 0, 7, 0, True, {"from": artist})


def test_setTerms_reverts_for_non_owner(ledger, bare_work, outsider):
    with brownie.reverts(err("NotWorkOwner(uint256,address)", bare_work, outsider.address)):
        ledger.setTerms(bare_work, METERED, 0, 1, 3_600, True, {"from": outsider})


def test_buyLicense_flat_takes_fee_accrues_it_and_sets_expiry(ledger, token, work_id, licensee, funded):
    before = token.balanceOf(licensee)

    tx = ledger.buyLicense(work_id, FLAT, FLAT_FEE, 0, 0, {"from": licensee})

    expiry = block_time(tx) + FLAT_DURATION
    ev = tx.events["LicenseBought"]
    assert (ev["licensee"], ev["workId"], ev["kind"], ev["fee"], ev["ratePerPlay"], ev["expiry"]) == (
        licensee,
        work_id,
        FLAT,
        FLAT_FEE,
        0,
        expiry,
    )
    assert tx.return_value == expiry
    assert tuple(ledger.licenseOf(licensee, work_id, FLAT)) == (0, expiry)
    assert token.balanceOf(licensee) == before - FLAT_FEE
    assert ledger.accruedOf(work_id) == FLAT_FEE


def test_buyLicense_flat_gives_buyer_a_licensee_index(ledger, work_id, licensee, funded):
    # ILicensing: "A licensee gets a 32-bit index the first time it deposits, buys a license or
    # registers a device".
    tx = ledger.buyLicense(work_id, FLAT, FLAT_FEE, 0, 0, {"from": licensee})

    assert ledger.licenseeIndexOf(licensee) != 0
    assert "LicenseeRegistered" in tx.events


def test_buyLicense_metered_records_rate_and_registers_licensee(ledger, work_id, licensee, funded):
    tx = ledger.buyLicense(work_id, METERED, 0, RATE, 0, {"from": licensee})

    expiry = block_time(tx) + METERED_DURATION
    assert tuple(ledger.licenseOf(licensee, work_id, METERED)) == (RATE, expiry)
    reg = tx.events["LicenseeRegistered"]
    assert reg["licensee"] == licensee
    assert ledger.licenseeIndexOf(licensee) == reg["licenseeIndex"] == 1
    assert ledger.licenseeAt(1) == licensee
    assert ledger.licenseeAt(2) == ZERO_ADDRESS


def test_buyLicense_metered_with_activation_fee_accrues_fee(ledger, token, bare_work, artist, licensee, funded):
    ledger.setTerms(bare_work, METERED, 250, 4, 3_600, True, {"from": artist})
    before = token.balanceOf(licensee)

    ledger.buyLicense(bare_work, METERED, 250, 4, 0, {"from": licensee})

    assert token.balanceOf(licensee) == before - 250
    assert ledger.accruedOf(bare_work) == 250
    assert ledger.licenseOf(licensee, bare_work, METERED)[0] == 4


def test_buyLicense_again_extends_expiry_by_one_period(ledger, work_id, licensee, funded):
    first = ledger.buyLicense(work_id, METERED, 0, RATE, 0, {"from": licensee}).return_value

    second = ledger.buyLicense(work_id, METERED, 0, RATE, 0, {"from": licensee})

    assert second.return_value == first + METERED_DURATION
    assert ledger.licenseOf(licensee, work_id, METERED)[1] == first + METERED_DURATION


def test_buyLicense_after_expiry_starts_new_period_from_now(ledger, bare_work, artist, licensee, funded):
    ledger.setTerms(bare_work, METERED, 0, 5, 100, True, {"from": artist})
    first = ledger.buyLicense(bare_work, METERED, 0, 5, 0, {"from": licensee}).return_value
    chain.sleep(500)

    tx = ledger.buyLicense(bare_work, METERED, 0, 5, 0, {"from": licensee})

    assert block_time(tx) > first
    assert tx.return_value == block_time(tx) + 100


def test_buyLicense_reverts_when_terms_not_offered(ledger, bare_work, licensee, funded):
    with brownie.reverts(err("TermsNotOffered(uint256,uint8)", bare_work, METERED)):
        ledger.buyLicense(bare_work, METERED, 0, 100, 0, {"from": licensee})


def test_buyLicense_reverts_when_offer_withdrawn(ledger, work_id, artist, licensee, funded):
    ledger.setTerms(work_id, FLAT, FLAT_FEE, 0, 0, False, {"from": artist})
    with brownie.reverts(err("TermsNotOffered(uint256,uint8)", work_id, FLAT)):
        ledger.buyLicense(work_id, FLAT, FLAT_FEE, 0, 0, {"from": licensee})


def test_buyLicense_reverts_when_fee_above_max(ledger, work_id, licensee, funded):
    with brownie.reverts(err("FeeAboveMax(uint256,uint256)", FLAT_FEE, FLAT_FEE - 1)):
        ledger.buyLicense(work_id, FLAT, FLAT_FEE - 1, 0, 0, {"from": licensee})


def test_buyLicense_reverts_when_rate_above_max(ledger, work_id, licensee, funded):
    with brownie.reverts(err("RateAboveMax(uint32,uint32)", RATE, RATE - 1)):
        ledger.buyLicense(work_id, METERED, 0, RATE - 1, 0, {"from": licensee})


def test_buyLicense_reverts_on_expiry_overflow(ledger, bare_work, artist, licensee, funded):
    duration = 2**32 - 1
    ledger.setTerms(bare_work, METERED, 0, 1, duration, True, {"from": artist})
    # The expiry is block.timestamp + duration; the next block's time is not known exactly.
    with brownie.reverts(revert_pattern=r"ExpiryOverflow: \d+"):
        ledger.buyLicense(bare_work, METERED, 0, 1, 0, {"from": licensee})


def test_buyLicense_reverts_when_accrual_would_overflow(ledger, bare_work, artist, licensee, funded):
    fee = 2**56  # the work's accrual is a 56-bit counter
    ledger.setTerms(bare_work, FLAT, fee, 0, 3_600, True, {"from": artist})
    with brownie.reverts(err("AccrualOverflow(uint256)", bare_work)):
        ledger.buyLicense(bare_work, FLAT, fee, 0, 0, {"from": licensee})


# --- finding 3: the buyer bounds the expiry -------------------------------------------------------


def test_buyLicense_reverts_when_owner_front_runs_with_short_duration(ledger, work_id, artist, licensee, funded):
    # The buyer read a 365-day FLAT offer and asks for at least that; the owner cuts the
    # duration to one second before the purchase lands.
    min_expiry = chain.time() + FLAT_DURATION - 3_600
    ledger.setTerms(work_id, FLAT, FLAT_FEE, 0, 1, True, {"from": artist})

    with brownie.reverts(revert_pattern=r"ExpiryBelowMin: \d+, %d" % min_expiry):
        ledger.buyLicense(work_id, FLAT, FLAT_FEE, 0, min_expiry, {"from": licensee})
    assert ledger.accruedOf(work_id) == 0


def test_buyLicense_succeeds_when_expiry_meets_buyers_minimum(ledger, work_id, licensee, funded):
    min_expiry = chain.time() + FLAT_DURATION - 3_600

    tx = ledger.buyLicense(work_id, FLAT, FLAT_FEE, 0, min_expiry, {"from": licensee})

    assert tx.return_value >= min_expiry


def test_buyLicenses_reverts_when_any_license_ends_before_minimum(ledger, work_id, work2_id, artist, licensee, funded):
    min_expiry = chain.time() + METERED_DURATION - 3_600
    ledger.setTerms(work2_id, METERED, 0, 3, 1, True, {"from": artist})

    with brownie.reverts(revert_pattern=r"ExpiryBelowMin: \d+, %d" % min_expiry):
        ledger.buyLicenses([work_id, work2_id], METERED, 0, RATE, min_expiry, {"from": licensee})


def test_buyLicenses_buys_one_period_on_each_work(ledger, token, work_id, work2_id, artist, licensee, funded):
    ledger.setTerms(work2_id, METERED, 40, 3, METERED_DURATION, True, {"from": artist})
    before = token.balanceOf(licensee)

    tx = ledger.buyLicenses([work_id, work2_id], METERED, 40, RATE, 0, {"from": licensee})

    assert [e["workId"] for e in tx.events["LicenseBought"]] == [work_id, work2_id]
    assert ledger.licenseOf(licensee, work_id, METERED)[0] == RATE
    assert ledger.licenseOf(licensee, work2_id, METERED)[0] == 3
    assert token.balanceOf(licensee) == before - 40
    assert ledger.accruedOf(work2_id) == 40


def test_buyLicenses_reverts_with_no_works(ledger, licensee, funded):
    with brownie.reverts(err("NoWorks()")):
        ledger.buyLicenses([], METERED, 0, RATE, 0, {"from": licensee})


def test_buyLicenses_reverts_when_total_fee_above_max(ledger, work_id, work2_id, artist, licensee, funded):
    ledger.setTerms(work2_id, FLAT, 5, 0, 3_600, True, {"from": artist})
    with brownie.reverts(err("FeeAboveMax(uint256,uint256)", FLAT_FEE + 5, FLAT_FEE)):
        ledger.buyLicenses([work_id, work2_id], FLAT, FLAT_FEE, 0, 0, {"from": licensee})


def test_deposit_adds_to_callers_escrow(ledger, token, licensee, funded):
    tx = ledger.deposit(5_000, {"from": licensee})

    ev = tx.events["EscrowDeposited"]
    assert (ev["licensee"], ev["from"], ev["amount"]) == (licensee, licensee, 5_000)
    assert tx.events["LicenseeRegistered"]["licensee"] == licensee
    assert ledger.escrowOf(licensee) == 5_000
    assert token.balanceOf(ledger) == 5_000


def test_deposit_reverts_on_zero_amount(ledger, licensee, funded):
    with brownie.reverts(err("ZeroAmount()")):
        ledger.deposit(0, {"from": licensee})


def test_depositFor_credits_another_licensee(ledger, token, licensee, outsider, funded):
    before = token.balanceOf(outsider)

    tx = ledger.depositFor(licensee, 700, {"from": outsider})

    ev = tx.events["EscrowDeposited"]
    assert (ev["licensee"], ev["from"], ev["amount"]) == (licensee, outsider, 700)
    assert ledger.escrowOf(licensee) == 700
    assert ledger.escrowOf(outsider) == 0
    assert token.balanceOf(outsider) == before - 700


def test_depositFor_reverts_for_zero_address(ledger, outsider, funded):
    with brownie.reverts(err("ZeroAddressRecipient()")):
        ledger.depositFor(ZERO_ADDRESS, 700, {"from": outsider})


def request(ledger, licensee, amount):
    """Asks for a withdrawal and lets the notice period pass."""
    ledger.requestEscrowWithdrawal(amount, {"from": licensee})
    chain.sleep(ledger.ESCROW_NOTICE())


def test_withdrawEscrow_sends_unused_escrow_to_any_address(ledger, token, licensee, outsider, funded):
    ledger.deposit(5_000, {"from": licensee})
    request(ledger, licensee, 1_500)
    before = token.balanceOf(outsider)

    tx = ledger.withdrawEscrow(1_500, outsider, {"from": licensee})

    ev = tx.events["EscrowWithdrawn"]
    assert (ev["licensee"], ev["to"], ev["amount"]) == (licensee, outsider, 1_500)
    assert ledger.escrowOf(licensee) == 3_500
    assert token.balanceOf(outsider) == before + 1_500
    assert tuple(ledger.escrowWithdrawalOf(licensee)) == (0, 0)


def test_withdrawEscrow_reverts_on_zero_amount(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    with brownie.reverts(err("ZeroAmount()")):
        ledger.withdrawEscrow(0, licensee, {"from": licensee})


def test_requestEscrowWithdrawal_reverts_when_escrow_insufficient(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    with brownie.reverts(err("InsufficientEscrow(uint256,uint256)", 5_000, 5_001)):
        ledger.requestEscrowWithdrawal(5_001, {"from": licensee})


def test_withdrawEscrow_reverts_to_zero_address(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    request(ledger, licensee, 1)
    with brownie.reverts(err("ZeroAddressRecipient()")):
        ledger.withdrawEscrow(1, ZERO_ADDRESS, {"from": licensee})


def test_withdrawEscrow_reverts_to_the_ledger_itself(ledger, licensee, funded):
    # Finding 9: tokens sent to the ledger would be counted in no balance, stranded forever.
    ledger.deposit(5_000, {"from": licensee})
    request(ledger, licensee, 1)
    with brownie.reverts(err("RecipientIsLedger()")):
        ledger.withdrawEscrow(1, ledger, {"from": licensee})


def test_withdrawEscrow_by_others_cannot_take_a_licensee_escrow(ledger, token, licensee, outsider, deployer, funded):
    ledger.deposit(5_000, {"from": licensee})
    request(ledger, licensee, 5_000)
    for thief in (outsider, deployer):
        with brownie.reverts(err("WithdrawalNotRequested(uint256,uint256)", 0, 1)):
            ledger.withdrawEscrow(1, thief, {"from": thief})
        with brownie.reverts(err("InsufficientEscrow(uint256,uint256)", 0, 1)):
            ledger.requestEscrowWithdrawal(1, {"from": thief})
    assert ledger.escrowOf(licensee) == 5_000
    assert token.balanceOf(ledger) == 5_000


# --- finding 4: escrow leaves only after a notice period -------------------------------------------


def test_withdrawEscrow_reverts_without_request(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    with brownie.reverts(err("WithdrawalNotRequested(uint256,uint256)", 0, 1_000)):
        ledger.withdrawEscrow(1_000, licensee, {"from": licensee})


def test_withdrawEscrow_reverts_before_notice_period_ends(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    tx = ledger.requestEscrowWithdrawal(5_000, {"from": licensee})
    available_at = block_time(tx) + ledger.ESCROW_NOTICE()
    assert tx.return_value == available_at
    ev = tx.events["EscrowWithdrawalRequested"]
    assert (ev["licensee"], ev["amount"], ev["availableAt"]) == (licensee, 5_000, available_at)
    assert tuple(ledger.escrowWithdrawalOf(licensee)) == (5_000, available_at)

    chain.sleep(ledger.ESCROW_NOTICE() - 60)
    with brownie.reverts(err("WithdrawalNotYetAvailable(uint64)", available_at)):
        ledger.withdrawEscrow(5_000, licensee, {"from": licensee})


def test_withdrawEscrow_reverts_above_requested_amount(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    request(ledger, licensee, 1_000)
    with brownie.reverts(err("WithdrawalNotRequested(uint256,uint256)", 1_000, 1_001)):
        ledger.withdrawEscrow(1_001, licensee, {"from": licensee})
    ledger.withdrawEscrow(600, licensee, {"from": licensee})
    assert tuple(ledger.escrowWithdrawalOf(licensee))[0] == 400


def test_requestEscrowWithdrawal_of_zero_cancels(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    request(ledger, licensee, 1_000)

    ledger.requestEscrowWithdrawal(0, {"from": licensee})

    assert tuple(ledger.escrowWithdrawalOf(licensee)) == (0, 0)
    with brownie.reverts(err("WithdrawalNotRequested(uint256,uint256)", 0, 1)):
        ledger.withdrawEscrow(1, licensee, {"from": licensee})


def test_setTerms_later_leaves_bought_license_rate(ledger, work_id, artist, licensee, funded):
    ledger.buyLicense(work_id, METERED, 0, RATE, 0, {"from": licensee})

    ledger.setTerms(work_id, METERED, 0, RATE * 5, METERED_DURATION, True, {"from": artist})

    assert ledger.licenseOf(licensee, work_id, METERED)[0] == RATE
    assert ledger.termsOf(work_id, METERED)[1] == RATE * 5


def test_setTerms_reverts_on_rate_above_31_bits(ledger, bare_work, artist):
    # A license lane keeps 31 bits of rate (and a flag for a previous rate period).
    with brownie.reverts(err("RateTooHigh(uint32)", 2**31)):
        ledger.setTerms(bare_work, METERED, 0, 2**31, 3_600, True, {"from": artist})
    ledger.setTerms(bare_work, METERED, 0, 2**31 - 1, 3_600, True, {"from": artist})


def test_depositFor_reverts_for_the_ledger_itself(ledger, outsider, funded):
    with brownie.reverts(err("RecipientIsLedger()")):
        ledger.depositFor(ledger, 700, {"from": outsider})
