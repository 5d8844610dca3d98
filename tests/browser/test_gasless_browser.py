"""Gasless actions in the browser, before the contracts merge: the portal (gunicorn) runs against
OpenZeppelin's compiled ERC2771Forwarder and a test-only target with the ledger's function and
event signatures (tests/webapp/contracts/GaslessTarget.sol). A custodial artist's registration
is signed on the server; a wallet user signs each ForwardRequest in the browser
(eth_signTypedData_v4). Either way the relayer pays and the target sees the user."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3 import Web3

from ledger import accounts, gasless
from tests.browser.browser_support import fill_work, install_wallet, sign_up
from tests.browser.conftest import Chain
from tests.support import running_anvil
from tests.webapp.portal_support import OZ_BUILD, deploy_gasless_world


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Overrides conftest's chain: the forwarder world instead of the ledger contracts."""
    if not (OZ_BUILD / "ERC2771Forwarder.json").exists():
        pytest.skip("node_modules has no OpenZeppelin build: run `make install`")
    with running_anvil("--chain-id", "31337") as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        deployment, _ = deploy_gasless_world(w3, "RoyaltyLedgerForwarder")
        path = tmp_path_factory.mktemp("deployments") / "31337.json"
        deployment.save(path)
        yield Chain(url, w3, deployment, path)


def _target(portal):
    d = portal.chain.deployment
    return portal.chain.w3.eth.contract(address=d.works.address, abi=d.works.abi)


def test_custodial_artist_registers_without_eth(portal, new_page):
    sign_up(new_page(), "glbl", ["label"])
    artist = new_page()
    sign_up(artist, "gina", ["artist"])
    page = artist.page
    page.goto("/artist/works/new")
    fill_work(page, "T-034.524.680-1", "gina", "glbl")
    page.click("#register")
    page.wait_for_url("**/artist/")
    assert "Confirmed on chain" in page.content()
    page.goto("/artist/actions")
    assert page.locator("mark.status-confirmed").count() == 3  # registration, split, METERED terms
    artist.shot("13-actions-confirmed")
    gina = accounts.find_user(portal.engine, "gina")
    [registration] = [a for a in gasless.actions_of(portal.engine, gina.id) if a.kind == "register_work"]
    assert _target(portal).functions.ownerOf(registration.work_id).call() == gina.address
    assert portal.chain.w3.eth.get_balance(gina.address) == 0


def test_wallet_user_signs_each_action_in_the_browser(portal, new_page):
    wallet = Account.create()
    p = new_page()
    install_wallet(p, wallet)
    p.page.goto("/login")
    p.page.click("#siwe-button")
    p.page.wait_for_url("**/artist/")
    page = p.page
    page.goto("/artist/works/new")
    page.fill("#title", "Wallet Song")
    page.fill("#payees-0-payee", wallet.address)
    page.fill("#payees-0-bps", "10000")
    page.click("#register")
    page.wait_for_url("**/artist/")
    assert "Sign the request with your wallet" in page.content()
    page.goto("/artist/actions")
    p.shot("14-actions-awaiting-signature")
    for _ in range(4):  # the registration, then its split and METERED terms
        buttons = page.locator("button.sign-action")
        if buttons.count() == 0:
            break
        with page.expect_navigation():
            buttons.first.click()
    assert page.locator("button.sign-action").count() == 0
    assert page.locator("mark.status-confirmed").count() == 3
    user = accounts.find_user(portal.engine, wallet.address.lower())
    [registration] = [a for a in gasless.actions_of(portal.engine, user.id) if a.kind == "register_work"]
    assert _target(portal).functions.ownerOf(registration.work_id).call() == wallet.address
    assert portal.chain.w3.eth.get_balance(wallet.address) == 0
    assert [m for m in p.problems if "status of 4" not in m] == [], p.problems
