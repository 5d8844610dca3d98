"""The on-chain half of the browser test, on its own Anvil and index: an artist registers a work
with a 2-payee split and METERED terms through the ledger's ERC2771Forwarder (signed with the
artist's custodial key, paid by the portal's relayer); a venue licenses it and its device reports
plays through the real ingest; the relayer and the indexer put them in the index; the artist sees
them on the work page and its chart, distributes, withdraws with 0 ETH and downloads a statement
whose total matches the balance change; the label reads the same figures over the API."""

from __future__ import annotations

import csv
import io
import json

import pytest
import requests

from ledger import accounts
from ledger.statements import Period, statement
from tests.browser.browser_support import fill_work, sign_up


@pytest.mark.needs_forwarder
def test_plays_to_withdrawal_on_chain(portal, new_page):
    """The on-chain half; runs once the deployment has an ERC2771Forwarder."""
    from eth_account import Account

    from ledger import playbatch
    from ledger.chain import LedgerClient, LicenseKind
    from ledger.gasless import FORWARDER_KEYS
    from ledger.indexer import Indexer
    from ledger.relayer import Relayer

    chain = portal.chain
    if not any(k in chain.deployment.contracts for k in FORWARDER_KEYS):
        pytest.skip("the deployment has no ERC2771Forwarder yet (contracts branch): finished after the merge")
    w3 = chain.w3

    def index():
        Indexer(portal.engine, w3, chain.deployment, progress=False).run()

    label = new_page()
    sign_up(label, "lbl2", ["label"])
    artist = new_page()
    sign_up(artist, "ada2", ["artist"])
    ada = accounts.find_user(portal.engine, "ada2")
    page = artist.page
    page.goto("/artist/works/new")
    fill_work(page, "T0345246801", "ada2", "lbl2")
    page.fill("#isrc", "US-SKG-26-00043")
    page.click("#register")
    page.wait_for_url("**/artist/")
    assert "Confirmed on chain" in page.content()
    index()
    page.goto("/artist/")
    assert "Night Drive" in page.content()
    work_id = LedgerClient(w3, chain.deployment).works.functions.totalWorks().call()

    # A venue licenses the work and its device reports plays through the real ingest.
    venue = w3.eth.accounts[2]
    client = LedgerClient(w3, chain.deployment, venue)
    client.faucet(venue, 1_000 * 10**6)
    client.deposit(100 * 10**6)
    client.buy_license(work_id, LicenseKind.METERED)
    device = Account.create()
    client.register_device(device.address, "GB", client.device_proof(device))
    now = w3.eth.get_block("latest")["timestamp"]
    entries = playbatch.encode_entries({work_id: 250})
    batch = playbatch.sign_batch(
        device, w3.eth.chain_id, chain.deployment.ledger.address, 1, now - 120, now - 1, entries
    )
    body = {
        "device": batch.device,
        "nonce": 1,
        "fromTime": batch.from_time,
        "toTime": batch.to_time,
        "entries": "0x" + entries.hex(),
        "signature": "0x" + batch.signature.hex(),
    }
    assert requests.post(portal.url + "/api/v1/batches", json=body, timeout=30).status_code == 202
    Relayer(w3, chain.deployment, Account.from_key(portal.env["LEDGER_RELAYER_KEY"]), portal.engine).run(once=True)
    index()

    page.goto(f"/artist/works/{work_id}")
    page.wait_for_selector("body[data-charts-ready='1']", state="attached")
    assert page.text_content("#total-plays") == "250"
    page.click("#distribute")
    index()
    before = statement(portal.engine, ada.address, Period()).totals.net
    page.goto("/artist/balance")
    page.fill("#to", ada.address)
    page.click("#withdraw")
    index()
    assert w3.eth.get_balance(ada.address) == 0  # nobody needs ETH
    with page.expect_download() as download:
        page.click("#download-statement")
    total = list(csv.reader(io.StringIO(download.value.path().read_text())))[-1]
    assert int(total[-1]) == before == client.token_balance(ada.address)
    page.goto(f"/artist/works/{work_id}")
    artist.shot("11-on-chain-work-page")

    lpage = label.page  # the label reads the same figures over the API with a token
    lpage.goto("/label/tokens")
    lpage.fill("#name", "api")
    lpage.click("#create-token")
    headers = {"Authorization": f"Bearer {lpage.text_content('#new-token').strip()}"}
    plays = requests.get(f"{portal.url}/api/v1/works/{work_id}/plays", headers=headers, timeout=10).json()
    assert sum(p["plays"] for p in plays["byTime"]) == 250
    lbl = accounts.find_user(portal.engine, "lbl2")
    api_statement = requests.get(f"{portal.url}/api/v1/statements", headers=headers, timeout=10).json()
    assert api_statement == json.loads(statement(portal.engine, lbl.address, Period()).to_json())
    assert int(api_statement["totals"]["net"]) + before == 250 * 1_000
