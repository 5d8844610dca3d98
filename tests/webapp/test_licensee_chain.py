"""Licensee pages end to end against the real contracts (TrustedForwarder, WorkRegistry,
RoyaltyLedger, TestStablecoin as `ledger deploy` deploys them) on Anvil: a licensee holding not
one wei of ETH gets test tokens, tops up escrow with an ERC-2612 permit through the forwarder,
buys two METERED licenses in one basket with its limits, sees a purchase refused when an artist
raises the rate after the page was read, and withdraws escrow after the notice period. A wallet
user does the same top-up by signing the permit and the request as eth_signTypedData_v4 would."""

from __future__ import annotations

import re
import time

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from portal_support import Portal, csrf_of, make_app
from web3 import Web3

from ledger import accounts, gasless
from ledger.chain import LedgerClient, LicenseKind, deploy
from ledger.indexer import Indexer
from tests.support import BUILD_DIR, ensure_compiled, running_anvil

DAY = 86_400
USD = 10**6
FEE, RATE = 1 * USD, 2_000  # $1 activation fee, $0.002 a play


@pytest.fixture(scope="module")
def chain():
    ensure_compiled()
    with running_anvil("--chain-id", "31337") as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        deployment = deploy(w3, w3.eth.accounts[0], BUILD_DIR)
        yield w3, deployment


@pytest.fixture
def artist(chain):
    """An artist (the node's third account) with three works offering METERED terms."""
    w3, deployment = chain
    client = LedgerClient(w3, deployment, w3.eth.accounts[2])
    ids = []
    for title in ("Harbour Lights", "Slow Tide", "Copper Sky"):
        work_id = client.register_work(title=f"{title} {time.monotonic_ns()}")
        client.set_split(work_id, [client.address], [10_000])
        client.set_terms(work_id, LicenseKind.METERED, FEE, RATE, 30 * DAY)
        ids.append(work_id)
    return client, ids


@pytest.fixture
def on_chain(chain, engine, users, artist):
    """The portal whose relayer (a key of its own, with ETH) sends through the real forwarder."""
    w3, deployment = chain
    payer = Account.create()
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": payer.address, "value": 10**18})
    app = make_app(engine)
    app.config["GASLESS_RELAYER"] = gasless.GaslessRelayer(w3, deployment, payer, engine, 3_000_000)
    return app


def index(chain, engine):
    w3, deployment = chain
    Indexer(engine, w3, deployment, progress=False).run()


def text(response) -> str:
    return re.sub(r"\s+", " ", response.data.decode())


def advance(w3, seconds):
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def test_zero_eth_licensee_tops_up_buys_a_basket_and_withdraws(chain, engine, users, artist, on_chain):
    w3, deployment = chain
    ledger = LedgerClient(w3, deployment)
    me = users["lic"].address
    lic = Portal(on_chain)
    lic.login("lic")
    artist_client, (first, second, third) = artist
    index(chain, engine)

    # Devnet test tokens, minted by the relayer from the test stablecoin's faucet.
    assert lic.post_form("/licensee/escrow/mint", {"mint-amount": "1000"}, "/licensee/escrow").status_code == 302
    assert ledger.token_balance(me) == 1_000 * USD
    page = text(lic.get("/licensee/escrow"))
    assert "Minted $1,000.00 of test tokens" in page and 'id="token-balance">$1,000.00<' in page

    # Top up with a permit through the forwarder: one relayed depositWithPermit, 0 ETH.
    response = lic.post_form("/licensee/escrow/top-up", {"topup-amount": "50"}, "/licensee/escrow")
    assert response.status_code == 302
    [deposit] = [a for a in gasless.actions_of(engine, users["lic"].id) if a.kind == "deposit_with_permit"]
    assert deposit.status == "confirmed", deposit.error
    tx = w3.eth.get_transaction(deposit.tx_hash)
    assert tx["to"] == deployment.forwarder.address and tx["from"] != me
    assert ledger.escrow_of(me) == 50 * USD and ledger.token_balance(me) == 950 * USD
    assert w3.eth.get_balance(me) == 0
    page = text(lic.get("/licensee/escrow"))
    assert 'id="escrow-balance">$50.00<' in page and "read from the chain" in page

    # Two licenses in one basket, with the buyer's limits (fees $2, rate $0.002, expiry >= 29 days).
    for work_id in (first, second):
        assert lic.post_form("/licensee/basket/add", {"work_id": work_id}, "/licensee/").status_code == 302
    basket = lic.get("/licensee/basket").data.decode()
    assert 'value="2.00"' in basket and 'value="0.002"' in basket
    min_expiry = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 29 * DAY))
    response = lic.post_form(
        "/licensee/basket", {"kind": "METERED", "max_fee": "2", "max_rate": "0.002", "min_expiry": min_expiry}
    )
    assert response.status_code == 302 and response.location.endswith("/licensee/licenses")
    actions = {a.kind: a for a in gasless.actions_of(engine, users["lic"].id)}
    buy = actions["buy_licenses"]
    assert buy.status == "confirmed", buy.error
    assert actions["fee_permit"].status == "confirmed"  # the relayer submitted the fee permit
    receipt = w3.eth.get_transaction_receipt(buy.tx_hash)
    bought = [e for e in ledger.ledger.events.LicenseBought().process_receipt(receipt)]
    assert sorted(e.args.workId for e in bought) == [first, second]
    assert {e.args.licensee for e in bought} == {me}
    for work_id in (first, second):
        rate, expiry = ledger.license_of(me, work_id, LicenseKind.METERED)
        assert rate == RATE and expiry >= time.time() + 29 * DAY
    assert ledger.token_balance(me) == 950 * USD - 2 * FEE and ledger.escrow_of(me) == 50 * USD
    assert w3.eth.get_balance(me) == 0
    index(chain, engine)
    page = text(lic.get("/licensee/licenses"))
    assert page.count("METERED") >= 2 and "Harbour Lights" in page and "Slow Tide" in page

    # The artist raises the rate after the page was read: the purchase is refused and says why.
    assert lic.post_form("/licensee/basket/add", {"work_id": third}, "/licensee/").status_code == 302
    artist_client.set_terms(third, LicenseKind.METERED, FEE, 5_000, 30 * DAY)  # not indexed yet
    tokens = ledger.token_balance(me)
    response = lic.post_form("/licensee/basket", {"kind": "METERED", "max_fee": "1", "max_rate": "0.002"})
    assert response.status_code == 302 and response.location.endswith("/licensee/basket")
    page = text(lic.get("/licensee/basket"))
    assert "Nothing was bought or moved: the rate per play is now above your maximum rate" in page
    assert "RateAboveMax(rate=5000, maxRate=2000)" in page
    assert "Copper Sky" in page  # still in the basket
    failed = [a for a in gasless.actions_of(engine, users["lic"].id) if a.kind == "buy_licenses"][0]
    assert failed.status == "failed" and failed.error.startswith("RateAboveMax")
    assert ledger.license_of(me, third, LicenseKind.METERED) == (0, 0) and ledger.token_balance(me) == tokens
    fee_permits = [a for a in gasless.actions_of(engine, users["lic"].id) if a.kind == "fee_permit"]
    assert len(fee_permits) == 1  # the refused purchase cost no permit transaction

    # Withdraw: request, refused before the notice ends, completed after it.
    assert (
        lic.post_form("/licensee/escrow/request-withdrawal", {"request-amount": "20"}, "/licensee/escrow").status_code
        == 302
    )
    amount, available_at = ledger.escrow_withdrawal_of(me)
    assert amount == 20 * USD and available_at > time.time() + 6 * DAY
    page = text(lic.get("/licensee/escrow"))
    assert "Requested: <strong>$20.00</strong>, available from" in page and "(now)" not in page
    early = lic.post_form("/licensee/escrow/withdraw", {"complete-amount": "20", "complete-to": me}, "/licensee/escrow")
    assert early.status_code == 400 and "the notice period runs until" in early.data.decode()
    advance(w3, 7 * DAY + 60)
    done = lic.post_form("/licensee/escrow/withdraw", {"complete-amount": "20", "complete-to": me}, "/licensee/escrow")
    assert done.status_code == 302
    assert ledger.escrow_of(me) == 30 * USD and ledger.token_balance(me) == tokens + 20 * USD
    assert w3.eth.get_balance(me) == 0
    index(chain, engine)
    page = text(lic.get("/licensee/escrow"))
    assert 'id="escrow-balance">$30.00<' in page and "withdraw" in page and "deposit" in page
    spent = gasless.gas_spent(engine, users["lic"].id)
    assert spent == sum(a.gas_used or 0 for a in gasless.actions_of(engine, users["lic"].id)) > 0


def test_the_portal_checks_limits_against_the_index_before_anything_is_signed(chain, engine, users, artist, on_chain):
    _, (first, _, _) = artist
    index(chain, engine)
    lic = Portal(on_chain)
    lic.login("lic")
    lic.post_form("/licensee/basket/add", {"work_id": first}, "/licensee/")
    response = lic.post_form("/licensee/basket", {"kind": "METERED", "max_fee": "1", "max_rate": "0.002"})
    assert response.status_code == 400  # no tokens: fees are paid from the token balance
    assert "your token balance is $0.00, less than the fees of $1.00" in text(response)
    assert gasless.actions_of(engine, users["lic"].id) == []


def test_wallet_licensee_signs_the_permit_then_the_request(chain, engine, on_chain):
    w3, deployment = chain
    ledger = LedgerClient(w3, deployment, w3.eth.accounts[0])
    wallet = Account.create()
    user = accounts.user_for_wallet(engine, wallet.address, roles=("licensee",))
    ledger.faucet(wallet.address, 10 * USD)
    portal = Portal(on_chain)
    with portal.client.session_transaction() as s:
        s["uid"] = user.id
    assert portal.post_form("/licensee/escrow/top-up", {"topup-amount": "4"}, "/licensee/escrow").status_code == 302
    [action] = gasless.actions_of(engine, user.id)
    assert action.status == "awaiting_permit"
    token = csrf_of(portal.get("/licensee/actions").data)

    def sign_and_send(kind):
        typed = portal.get(f"/licensee/actions/{action.id}/{kind[0]}").get_json()
        signature = wallet.sign_message(encode_typed_data(full_message=typed)).signature  # eth_signTypedData_v4
        response = portal.client.post(
            f"/licensee/actions/{action.id}/{kind[1]}",
            json={"signature": "0x" + bytes(signature).hex()},
            headers={"X-CSRFToken": token},
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    # a thief's permit signature is refused
    typed = portal.get(f"/licensee/actions/{action.id}/permit").get_json()
    assert typed["primaryType"] == "Permit" and typed["message"]["value"] == 4 * USD
    forged = Account.create().sign_message(encode_typed_data(full_message=typed)).signature
    response = portal.client.post(
        f"/licensee/actions/{action.id}/permit",
        json={"signature": "0x" + bytes(forged).hex()},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 400 and "not the user's" in response.get_json()["error"]["message"]

    assert sign_and_send(("permit", "permit"))["status"] == "awaiting_signature"
    assert sign_and_send(("typed-data", "signature"))["status"] == "confirmed"
    assert ledger.escrow_of(wallet.address) == 4 * USD and ledger.token_balance(wallet.address) == 6 * USD
    assert w3.eth.get_balance(wallet.address) == 0


def test_a_fee_raised_after_reading_is_refused_without_a_permit(chain, engine, users, artist, on_chain):
    w3, deployment = chain
    ledger = LedgerClient(w3, deployment, w3.eth.accounts[0])
    me = users["lic"].address
    ledger.faucet(me, 100 * USD)
    artist_client, (first, _, _) = artist
    index(chain, engine)
    lic = Portal(on_chain)
    lic.login("lic")
    lic.post_form("/licensee/basket/add", {"work_id": first}, "/licensee/")
    artist_client.set_terms(first, LicenseKind.METERED, 3 * FEE, RATE, 30 * DAY)  # not indexed yet
    response = lic.post_form("/licensee/basket", {"kind": "METERED", "max_fee": "1", "max_rate": "0.002"})
    assert response.status_code == 302
    page = text(lic.get("/licensee/basket"))
    assert "the fees are now above your maximum total fee (FeeAboveMax(fee=3000000, maxFee=1000000))" in page
    assert [a.kind for a in gasless.actions_of(engine, users["lic"].id)] == ["buy_licenses"]  # no fee permit
    assert ledger.token_balance(me) == 100 * USD and ledger.license_of(me, first, LicenseKind.METERED) == (0, 0)


def test_the_gas_budget_stops_a_top_up_before_anything_is_sent(chain, engine, users, artist):
    w3, deployment = chain
    payer = Account.create()
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": payer.address, "value": 10**18})
    app = make_app(engine)
    app.config["GASLESS_RELAYER"] = gasless.GaslessRelayer(w3, deployment, payer, engine, 50_000)
    me = users["lic"].address
    LedgerClient(w3, deployment, w3.eth.accounts[0]).faucet(me, 10 * USD)
    lic = Portal(app)
    lic.login("lic")
    assert lic.post_form("/licensee/escrow/top-up", {"topup-amount": "5"}, "/licensee/escrow").status_code == 302
    assert "Not sent: this action needs up to" in text(lic.get("/licensee/escrow"))
    assert LedgerClient(w3, deployment).escrow_of(me) == 0 and w3.eth.get_transaction_count(payer.address) == 0


def test_wallet_licensee_buys_a_license_with_a_fee(chain, engine, artist, on_chain):
    w3, deployment = chain
    ledger = LedgerClient(w3, deployment, w3.eth.accounts[0])
    _, (first, _, _) = artist
    index(chain, engine)
    wallet = Account.create()
    user = accounts.user_for_wallet(engine, wallet.address, roles=("licensee",))
    ledger.faucet(wallet.address, 10 * USD)
    portal = Portal(on_chain)
    with portal.client.session_transaction() as s:
        s["uid"] = user.id
    portal.post_form("/licensee/basket/add", {"work_id": first}, "/licensee/")
    response = portal.post_form("/licensee/basket", {"kind": "METERED", "max_fee": "1", "max_rate": "0.002"})
    assert response.status_code == 302
    [action] = gasless.actions_of(engine, user.id)
    assert action.status == "awaiting_permit"
    token = csrf_of(portal.get("/licensee/actions").data)
    for typed_path, signature_path, status in (
        ("permit", "permit", "awaiting_signature"),
        ("typed-data", "signature", "confirmed"),
    ):
        typed = portal.get(f"/licensee/actions/{action.id}/{typed_path}").get_json()
        signature = wallet.sign_message(encode_typed_data(full_message=typed)).signature
        response = portal.client.post(
            f"/licensee/actions/{action.id}/{signature_path}",
            json={"signature": "0x" + bytes(signature).hex()},
            headers={"X-CSRFToken": token},
        )
        assert response.status_code == 200 and response.get_json()["status"] == status, response.get_json()
    assert {a.kind for a in gasless.actions_of(engine, user.id)} == {"buy_licenses", "fee_permit"}
    rate, expiry = ledger.license_of(wallet.address, first, LicenseKind.METERED)
    assert rate == RATE and expiry > time.time()
    assert ledger.token_balance(wallet.address) == 10 * USD - FEE and w3.eth.get_balance(wallet.address) == 0
