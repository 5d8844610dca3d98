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
        bare_work, METERED, 50, 7, 3_600, True)
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

    tx = ledger.buyLicense(work_id, FLAT, FLAT_FEE, 0, {"from": licensee})

    expiry = block_time(tx) + FLAT_DURATION
    ev = tx.events["LicenseBought"]
    assert (ev["licensee"], ev["workId"], ev["kind"], ev["fee"], ev["ratePerPlay"], ev["expiry"]) == (
        licensee, work_id, FLAT, FLAT_FEE, 0, expiry)
    assert tx.return_value == expiry
    assert tuple(ledger.licenseOf(licensee, work_id, FLAT)) == (0, expiry)
    assert token.balanceOf(licensee) == before - FLAT_FEE
    assert ledger.accruedOf(work_id) == FLAT_FEE


def test_buyLicense_flat_gives_buyer_a_licensee_index(ledger, work_id, licensee, funded):
    # ILicensing: "A licensee gets a 32-bit index the first time it deposits, buys a license or
    # registers a device".
    tx = ledger.buyLicense(work_id, FLAT, FLAT_FEE, 0, {"from": licensee})

    assert ledger.licenseeIndexOf(licensee) != 0
    assert "LicenseeRegistered" in tx.events


def test_buyLicense_metered_records_rate_and_registers_licensee(ledger, work_id, licensee, funded):
    tx = ledger.buyLicense(work_id, METERED, 0, RATE, {"from": licensee})

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

    ledger.buyLicense(bare_work, METERED, 250, 4, {"from": licensee})

    assert token.balanceOf(licensee) == before - 250
    assert ledger.accruedOf(bare_work) == 250
    assert ledger.licenseOf(licensee, bare_work, METERED)[0] == 4


def test_buyLicense_again_extends_expiry_by_one_period(ledger, work_id, licensee, funded):
    first = ledger.buyLicense(work_id, METERED, 0, RATE, {"from": licensee}).return_value

    second = ledger.buyLicense(work_id, METERED, 0, RATE, {"from": licensee})

    assert second.return_value == first + METERED_DURATION
    assert ledger.licenseOf(licensee, work_id, METERED)[1] == first + METERED_DURATION


def test_buyLicense_after_expiry_starts_new_period_from_now(ledger, bare_work, artist, licensee, funded):
    ledger.setTerms(bare_work, METERED, 0, 5, 100, True, {"from": artist})
    first = ledger.buyLicense(bare_work, METERED, 0, 5, {"from": licensee}).return_value
    chain.sleep(500)

    tx = ledger.buyLicense(bare_work, METERED, 0, 5, {"from": licensee})

    assert block_time(tx) > first
    assert tx.return_value == block_time(tx) + 100


def test_buyLicense_reverts_when_terms_not_offered(ledger, bare_work, licensee, funded):
    with brownie.reverts(err("TermsNotOffered(uint256,uint8)", bare_work, METERED)):
        ledger.buyLicense(bare_work, METERED, 0, 100, {"from": licensee})


def test_buyLicense_reverts_when_offer_withdrawn(ledger, work_id, artist, licensee, funded):
    ledger.setTerms(work_id, FLAT, FLAT_FEE, 0, 0, False, {"from": artist})
    with brownie.reverts(err("TermsNotOffered(uint256,uint8)", work_id, FLAT)):
        ledger.buyLicense(work_id, FLAT, FLAT_FEE, 0, {"from": licensee})


def test_buyLicense_reverts_when_fee_above_max(ledger, work_id, licensee, funded):
    with brownie.reverts(err("FeeAboveMax(uint256,uint256)", FLAT_FEE, FLAT_FEE - 1)):
        ledger.buyLicense(work_id, FLAT, FLAT_FEE - 1, 0, {"from": licensee})


def test_buyLicense_reverts_when_rate_above_max(ledger, work_id, licensee, funded):
    with brownie.reverts(err("RateAboveMax(uint32,uint32)", RATE, RATE - 1)):
        ledger.buyLicense(work_id, METERED, 0, RATE - 1, {"from": licensee})


def test_buyLicense_reverts_on_expiry_overflow(ledger, bare_work, artist, licensee, funded):
    duration = 2**32 - 1
    ledger.setTerms(bare_work, METERED, 0, 1, duration, True, {"from": artist})
    # The expiry is block.timestamp + duration; the next block's time is not known exactly.
    with brownie.reverts(revert_pattern=r"ExpiryOverflow: \d+"):
        ledger.buyLicense(bare_work, METERED, 0, 1, {"from": licensee})


def test_buyLicense_reverts_when_accrual_would_overflow(ledger, bare_work, artist, licensee, funded):
    fee = 2**80  # the work's accrual is an 80-bit counter
    ledger.setTerms(bare_work, FLAT, fee, 0, 3_600, True, {"from": artist})
    with brownie.reverts(err("AccrualOverflow(uint256)", bare_work)):
        ledger.buyLicense(bare_work, FLAT, fee, 0, {"from": licensee})


def test_buyLicenses_buys_one_period_on_each_work(ledger, token, work_id, work2_id, artist, licensee, funded):
    ledger.setTerms(work2_id, METERED, 40, 3, METERED_DURATION, True, {"from": artist})
    before = token.balanceOf(licensee)

    tx = ledger.buyLicenses([work_id, work2_id], METERED, 40, RATE, {"from": licensee})

    assert [e["workId"] for e in tx.events["LicenseBought"]] == [work_id, work2_id]
    assert ledger.licenseOf(licensee, work_id, METERED)[0] == RATE
    assert ledger.licenseOf(licensee, work2_id, METERED)[0] == 3
    assert token.balanceOf(licensee) == before - 40
    assert ledger.accruedOf(work2_id) == 40


def test_buyLicenses_reverts_with_no_works(ledger, licensee, funded):
    with brownie.reverts(err("NoWorks()")):
        ledger.buyLicenses([], METERED, 0, RATE, {"from": licensee})


def test_buyLicenses_reverts_when_total_fee_above_max(ledger, work_id, work2_id, artist, licensee, funded):
    ledger.setTerms(work2_id, FLAT, 5, 0, 3_600, True, {"from": artist})
    with brownie.reverts(err("FeeAboveMax(uint256,uint256)", FLAT_FEE + 5, FLAT_FEE)):
        ledger.buyLicenses([work_id, work2_id], FLAT, FLAT_FEE, 0, {"from": licensee})


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


def test_withdrawEscrow_sends_unused_escrow_to_any_address(ledger, token, licensee, outsider, funded):
    ledger.deposit(5_000, {"from": licensee})
    before = token.balanceOf(outsider)

    tx = ledger.withdrawEscrow(1_500, outsider, {"from": licensee})

    ev = tx.events["EscrowWithdrawn"]
    assert (ev["licensee"], ev["to"], ev["amount"]) == (licensee, outsider, 1_500)
    assert ledger.escrowOf(licensee) == 3_500
    assert token.balanceOf(outsider) == before + 1_500


def test_withdrawEscrow_reverts_on_zero_amount(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    with brownie.reverts(err("ZeroAmount()")):
        ledger.withdrawEscrow(0, licensee, {"from": licensee})


def test_withdrawEscrow_reverts_when_escrow_insufficient(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    with brownie.reverts(err("InsufficientEscrow(uint256,uint256)", 5_000, 5_001)):
        ledger.withdrawEscrow(5_001, licensee, {"from": licensee})


def test_withdrawEscrow_reverts_to_zero_address(ledger, licensee, funded):
    ledger.deposit(5_000, {"from": licensee})
    with brownie.reverts(err("ZeroAddressRecipient()")):
        ledger.withdrawEscrow(1, ZERO_ADDRESS, {"from": licensee})


def test_withdrawEscrow_by_others_cannot_take_a_licensee_escrow(ledger, token, licensee, outsider, deployer,
                                                               funded):
    ledger.deposit(5_000, {"from": licensee})
    for thief in (outsider, deployer):
        with brownie.reverts(err("InsufficientEscrow(uint256,uint256)", 0, 1)):
            ledger.withdrawEscrow(1, thief, {"from": thief})
    assert ledger.escrowOf(licensee) == 5_000
    assert token.balanceOf(ledger) == 5_000


def test_setTerms_later_leaves_bought_license_rate(ledger, work_id, artist, licensee, funded):
    ledger.buyLicense(work_id, METERED, 0, RATE, {"from": licensee})

    ledger.setTerms(work_id, METERED, 0, RATE * 5, METERED_DURATION, True, {"from": artist})

    assert ledger.licenseOf(licensee, work_id, METERED)[0] == RATE
    assert ledger.termsOf(work_id, METERED)[1] == RATE * 5
