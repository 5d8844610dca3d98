"""Gasless use (ERC-2771): a key holding no ETH acts through the trusted forwarder, a relayer
pays the gas; deposits use an ERC-2612 permit instead of an approve transaction."""

import brownie
import pytest
from brownie import chain, web3
from eth_account import Account
from eth_account.messages import encode_typed_data

from contract_helpers import METERED, err

FORWARD_REQUEST_TYPES = {
    "ForwardRequest": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "gas", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint48"},
        {"name": "data", "type": "bytes"},
    ]
}
PERMIT_TYPES = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}
INNER_GAS = 1_000_000
DAY = 86_400


def signed(key, domain, types, message) -> bytes:
    sig = key.sign_message(encode_typed_data(domain_data=domain, message_types=types, message_data=message))
    return sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.v])


def forward_request(forwarder, key, target, data, signer=None, nonce=None):
    """ForwardRequestData for `target.call(data)` from `key`, signed by `signer` (default: key)."""
    deadline = chain.time() + 30 * DAY
    nonce = forwarder.nonces(key.address) if nonce is None else nonce
    message = {
        "from": key.address,
        "to": target.address,
        "value": 0,
        "gas": INNER_GAS,
        "nonce": nonce,
        "deadline": deadline,
        "data": bytes.fromhex(data[2:]),
    }
    domain = {
        "name": "RoyaltyLedgerForwarder",
        "version": "1",
        "chainId": chain.id,
        "verifyingContract": forwarder.address,
    }
    sig = signed(signer or key, domain, FORWARD_REQUEST_TYPES, message)
    return (key.address, target.address, 0, INNER_GAS, deadline, data, sig)


def permit(token, key, spender, value):
    """(deadline, v, r, s) of an ERC-2612 permit of `key` for `spender`."""
    deadline = chain.time() + 30 * DAY
    domain = {"name": "Test USD", "version": "1", "chainId": chain.id, "verifyingContract": token.address}
    sig = signed(
        key,
        domain,
        PERMIT_TYPES,
        {
            "owner": key.address,
            "spender": spender.address,
            "value": value,
            "nonce": token.nonces(key.address),
            "deadline": deadline,
        },
    )
    return deadline, sig[64], sig[:32], sig[32:64]


@pytest.fixture
def user(token, deployer):
    """A fresh key with tokens and not one wei of ETH."""
    key = Account.create()
    token.mint(key.address, 1_000_000, {"from": deployer})
    assert web3.eth.get_balance(key.address) == 0
    return key


def relay(forwarder, relayer, request):
    tx = forwarder.execute(request, {"from": relayer})
    assert tx.events["ExecutedForwardRequest"]["success"]
    return tx


def test_zero_eth_key_registers_work_sets_split_and_terms_buys_deposits_and_withdraws(
    forwarder, works, ledger, token, user, relayer
):
    # Artist side: register a work, split it to itself, offer METERED terms with a fee.
    tx = relay(
        forwarder,
        relayer,
        forward_request(forwarder, user, works, works.registerWork.encode_input("ipfs://gasless", b"\x00" * 12)),
    )
    work_id = tx.events["WorkRegistered"]["workId"]
    assert works.ownerOf(work_id) == user.address and tx.events["WorkRegistered"]["owner"] == user.address
    relay(
        forwarder,
        relayer,
        forward_request(
            forwarder, user, ledger, ledger.setSplit.encode_input(work_id, [user.address], [10_000], [], [])
        ),
    )
    relay(
        forwarder,
        relayer,
        forward_request(
            forwarder, user, ledger, ledger.setTerms.encode_input(work_id, METERED, 500, 7, 30 * DAY, True)
        ),
    )
    # Licensee side: a permit pays for the license fee (anyone may submit a permit), then the
    # purchase and a deposit-with-permit, all relayed.
    token.permit(user.address, ledger, 500, *permit(token, user, ledger, 500), {"from": relayer})
    tx = relay(
        forwarder,
        relayer,
        forward_request(forwarder, user, ledger, ledger.buyLicense.encode_input(work_id, METERED, 500, 7, 0)),
    )
    assert tx.events["LicenseBought"]["licensee"] == user.address
    tx = relay(
        forwarder,
        relayer,
        forward_request(
            forwarder, user, ledger, ledger.depositWithPermit.encode_input(40_000, *permit(token, user, ledger, 40_000))
        ),
    )
    assert (tx.events["EscrowDeposited"]["licensee"], tx.events["EscrowDeposited"]["amount"]) == (user.address, 40_000)
    assert ledger.escrowOf(user.address) == 40_000
    # Withdraw: escrow after its notice, and the work's fee as its only payee.
    relay(
        forwarder,
        relayer,
        forward_request(forwarder, user, ledger, ledger.requestEscrowWithdrawal.encode_input(15_000)),
    )
    chain.sleep(ledger.ESCROW_NOTICE())
    relay(
        forwarder,
        relayer,
        forward_request(forwarder, user, ledger, ledger.withdrawEscrow.encode_input(15_000, user.address)),
    )
    ledger.distribute(work_id, [user.address], [10_000], {"from": relayer})
    tx = relay(forwarder, relayer, forward_request(forwarder, user, ledger, ledger.withdraw.encode_input(user.address)))
    assert (tx.events["Withdrawn"]["payee"], tx.events["Withdrawn"]["amount"]) == (user.address, 500)

    assert ledger.escrowOf(user.address) == 25_000
    assert token.balanceOf(user.address) == 1_000_000 - 500 - 40_000 + 15_000 + 500
    assert web3.eth.get_balance(user.address) == 0


def test_forwarder_rejects_request_signed_by_another_key(forwarder, ledger, relayer):
    # A forger names the victim as `from` but signs with its own key.
    victim = Account.create()
    forger = Account.create()
    request = forward_request(forwarder, victim, ledger, ledger.requestEscrowWithdrawal.encode_input(0), signer=forger)

    assert not forwarder.verify(request)
    with brownie.reverts():
        forwarder.execute(request, {"from": relayer})


def test_forwarder_rejects_replayed_request(forwarder, works, user, relayer):
    request = forward_request(forwarder, user, works, works.registerWork.encode_input("ipfs://once", b"\x00" * 12))
    relay(forwarder, relayer, request)

    assert not forwarder.verify(request)
    with brownie.reverts():
        forwarder.execute(request, {"from": relayer})
    assert works.totalWorks() == 1


def test_untrusted_caller_cannot_append_a_sender(ledger, works, user, outsider, relayer):
    # ERC-2771 reads the appended address only from the trusted forwarder: anyone else who
    # appends the user's address to a call still acts as itself.
    data = ledger.withdraw.encode_input(outsider.address) + user.address[2:].lower()
    with brownie.reverts(err("NothingToWithdraw(address)", outsider.address)):
        outsider.transfer(ledger, 0, data=data)


def test_contracts_trust_the_forwarder_fixed_at_deployment(forwarder, works, ledger, outsider):
    assert ledger.trustedForwarder() == forwarder == works.trustedForwarder()
    assert ledger.isTrustedForwarder(forwarder) and not ledger.isTrustedForwarder(outsider)


def test_depositWithPermit_goes_on_when_permit_was_front_run(forwarder, ledger, token, user, relayer, outsider):
    deadline, v, r, s = permit(token, user, ledger, 9_000)
    token.permit(user.address, ledger, 9_000, deadline, v, r, s, {"from": outsider})  # the front-runner

    relay(
        forwarder,
        relayer,
        forward_request(forwarder, user, ledger, ledger.depositWithPermit.encode_input(9_000, deadline, v, r, s)),
    )

    assert ledger.escrowOf(user.address) == 9_000


def test_depositWithPermit_reverts_without_permit_or_allowance(forwarder, ledger, token, user, relayer):
    deadline, v, r, s = permit(token, user, ledger, 9_000)
    request = forward_request(
        forwarder, user, ledger, ledger.depositWithPermit.encode_input(9_001, deadline, v, r, s)
    )  # not what was signed

    with brownie.reverts():
        forwarder.execute(request, {"from": relayer})
    assert ledger.escrowOf(user.address) == 0
