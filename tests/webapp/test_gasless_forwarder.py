"""ledger.gasless against OpenZeppelin's real ERC2771Forwarder (the compiled artifact shipped in
@openzeppelin/contracts) on Anvil, with a test-only ERC2771Context target: the user signs, the
relayer pays, the target sees the user as _msgSender(), the daily gas budget holds.

Until the contracts branch deploys the ledger behind a forwarder, this is where the gasless path
meets a real forwarder; the browser test's `needs_forwarder` half covers the real ledger after it."""

from __future__ import annotations

import itertools
import json

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from portal_support import deploy_gasless_world
from web3 import Web3

from ledger import accounts, gasless
from ledger.playbatch import sorted_split
from tests.support import ROOT, running_anvil

OZ = ROOT / "node_modules" / "@openzeppelin" / "contracts"
_ISRCS = itertools.count(1)


def fresh_isrc() -> str:
    """An ISRC not used yet on the module's chain (shared by the SQLite and PostgreSQL runs)."""
    return f"USSKG26{next(_ISRCS):05d}"


FORWARDER_NAME = "RoyaltyLedgerForwarder"  # the name main's `ledger deploy` gives it
SECRET = "f" * 40


@pytest.fixture(scope="module")
def world():
    if not (OZ / "build" / "contracts" / "ERC2771Forwarder.json").exists():
        pytest.skip("node_modules has no OpenZeppelin build: run `make install`")
    with running_anvil("--chain-id", "31337") as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        deployment, target = deploy_gasless_world(w3, FORWARDER_NAME)
        yield w3, deployment, target


def _relayer(world, engine, budget=2_000_000):
    w3, deployment, _ = world
    payer = Account.create()
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": payer.address, "value": 10**18})
    return gasless.GaslessRelayer(w3, deployment, payer, engine, budget), payer


def _register(engine, user, title, isrc=None):
    from ledger.metadata import make_data_uri

    return gasless.queue_action(
        engine, user.id, "register_work", {"uri": make_data_uri(title), "isrc": isrc, "title": title}
    )


def test_domain_is_read_from_the_forwarder(world, engine):
    relayer, _ = _relayer(world, engine)
    domain = relayer.domain()
    assert (domain.name, domain.version, domain.chain_id) == (FORWARDER_NAME, "1", 31337)
    assert domain.verifying_contract == world[1].contracts["TrustedForwarder"].address


def test_custodial_action_is_signed_by_the_user_and_paid_by_the_relayer(world, engine):
    w3, _, target = world
    relayer, payer = _relayer(world, engine)
    user = accounts.create_user(engine, "gasless-artist", "long enough password", ["artist"], SECRET)
    paid_before = w3.eth.get_balance(payer.address)
    done = relayer.run(_register(engine, user, "Night Drive", fresh_isrc()), user, SECRET)
    assert done.status == "confirmed" and done.work_id == target.functions.totalWorks().call()
    assert target.functions.ownerOf(done.work_id).call() == user.address  # _msgSender() is the user
    assert w3.eth.get_balance(user.address) == 0  # the user needs no ETH
    assert w3.eth.get_balance(payer.address) < paid_before  # the relayer paid
    assert 0 < done.gas_used <= done.gas_reserved and gasless.gas_spent(engine, user.id) == done.gas_used


def test_a_revert_is_recorded_with_the_contracts_error(world, engine):
    relayer, _ = _relayer(world, engine)
    user = accounts.create_user(engine, "gasless-dup", "long enough password", ["artist"], SECRET)
    isrc = fresh_isrc()
    relayer.run(_register(engine, user, "First", isrc), user, SECRET)
    second = _register(engine, user, "Copy", isrc)
    with pytest.raises(gasless.GaslessError, match="IsrcAlreadyRegistered"):
        relayer.run(second, user, SECRET)
    assert gasless.get_action(engine, second.id).status == "failed"


def test_the_daily_gas_budget_stops_the_relayer_before_sending(world, engine):
    w3, _, target = world
    relayer, payer = _relayer(world, engine, budget=50_000)
    user = accounts.create_user(engine, "gasless-greedy", "long enough password", ["artist"], SECRET)
    works, nonce = target.functions.totalWorks().call(), w3.eth.get_transaction_count(payer.address)
    with pytest.raises(gasless.GasBudgetExceeded, match="try again tomorrow"):
        relayer.run(_register(engine, user, "Too Much"), user, SECRET)
    assert target.functions.totalWorks().call() == works and w3.eth.get_transaction_count(payer.address) == nonce


def test_wallet_user_signs_the_typed_data_like_a_wallet(world, engine):
    _, _, target = world
    relayer, _ = _relayer(world, engine)
    wallet = Account.create()
    user = accounts.user_for_wallet(engine, wallet.address)
    waiting = relayer.run(_register(engine, user, "Wallet Song"), user, SECRET)
    assert waiting.status == "awaiting_signature"
    typed = gasless.ForwardRequest.from_json(json.loads(waiting.request)).typed_data(relayer.domain())
    thief = Account.create()
    forged = thief.sign_message(encode_typed_data(full_message=typed)).signature
    with pytest.raises(gasless.GaslessError, match="not the user's"):
        relayer.submit_signed(waiting, user, bytes(forged), SECRET)
    signature = wallet.sign_message(encode_typed_data(full_message=typed)).signature  # eth_signTypedData_v4
    done = relayer.submit_signed(gasless.get_action(engine, waiting.id), user, bytes(signature), SECRET)
    assert done.status == "confirmed"
    assert target.functions.ownerOf(done.work_id).call() == wallet.address


# ----------------------------------------------------------------------------- through the portal


@pytest.fixture
def portal_on_chain(world, engine, users):
    """The portal app whose relayer sends through the real forwarder to the test target."""
    from portal_support import make_app

    app = make_app(engine)
    app.config["GASLESS_RELAYER"], _ = _relayer(world, engine)
    return app


def _events(world, name, tx_hash):
    w3, _, target = world
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    return [e.args for e in getattr(target.events, name)().process_receipt(receipt)]


def test_portal_registration_split_and_terms_go_through_the_forwarder(world, engine, users, portal_on_chain):
    from portal_support import Portal

    w3, _, target = world
    alice = Portal(portal_on_chain)
    alice.login("alice")
    response = alice.post_form(
        "/artist/works/new",
        {
            "title": "Relayed",
            "isrc": "",
            "iswc": "T0345246801",
            "payees-0-payee": "alice",
            "payees-0-bps": "7000",
            "payees-1-payee": "label",
            "payees-1-bps": "3000",
            "metered": "y",
            "metered_rate": "0.002",
            "metered_fee": "1",
            "metered_days": "30",
            "flat": "y",
            "flat_fee": "100",
            "flat_days": "7",
        },
    )
    assert response.status_code == 302
    assert b"Confirmed on chain" in alice.get("/artist/").data
    actions = sorted(gasless.actions_of(engine, users["alice"].id), key=lambda a: a.id)
    assert [(a.kind, a.status) for a in actions] == [
        ("register_work", "confirmed"),
        ("set_split", "confirmed"),
        ("set_terms", "confirmed"),
        ("set_terms", "confirmed"),
    ]
    work_id = actions[0].work_id
    assert target.functions.ownerOf(work_id).call() == users["alice"].address
    [split] = _events(world, "SplitSet", actions[1].tx_hash)
    expected = sorted_split([users["alice"].address, users["label"].address], [7000, 3000])
    assert split["workId"] == work_id and (list(split["payees"]), list(split["bps"])) == expected
    [metered] = _events(world, "TermsSet", actions[2].tx_hash)
    assert (metered["kind"], metered["fee"], metered["ratePerPlay"], metered["duration"]) == (
        1,
        10**6,
        2000,
        30 * 86400,
    )
    [flat] = _events(world, "TermsSet", actions[3].tx_hash)
    assert (flat["kind"], flat["fee"], flat["duration"]) == (0, 100 * 10**6, 7 * 86400)
    assert w3.eth.get_balance(users["alice"].address) == 0
    assert gasless.gas_spent(engine, users["alice"].id) == sum(a.gas_used for a in actions)


def test_portal_withdraw_goes_through_the_forwarder_as_the_payee(world, engine, users, portal_on_chain, seeded):
    from portal_support import Portal

    _, _, target = world
    alice = Portal(portal_on_chain)
    alice.login("alice")
    to = "0x" + "cd" * 20
    assert alice.post_form("/artist/balance", {"to": to}).status_code == 302
    [action] = gasless.actions_of(engine, users["alice"].id)
    assert action.status == "confirmed"
    [withdrawn] = _events(world, "Withdrawn", action.tx_hash)
    assert withdrawn["payee"] == users["alice"].address and withdrawn["to"].lower() == to


def test_a_wallet_request_overtaken_by_another_action_is_built_again(world, engine):
    relayer, _ = _relayer(world, engine)
    wallet = Account.create()
    user = accounts.user_for_wallet(engine, wallet.address)
    first = relayer.run(_register(engine, user, "One"), user, SECRET)
    second = relayer.run(_register(engine, user, "Two"), user, SECRET)

    def sign(action):
        request = gasless.ForwardRequest.from_json(json.loads(action.request))
        typed = request.typed_data(relayer.domain())
        return bytes(wallet.sign_message(encode_typed_data(full_message=typed)).signature)

    relayer.submit_signed(first, user, sign(first), SECRET)
    with pytest.raises(gasless.GaslessError, match="overtaken by another action: sign it again"):
        relayer.submit_signed(second, user, sign(second), SECRET)
    relayer.prepare_signature(second, user)
    fresh = gasless.get_action(engine, second.id)
    assert relayer.submit_signed(fresh, user, sign(fresh), SECRET).status == "confirmed"
