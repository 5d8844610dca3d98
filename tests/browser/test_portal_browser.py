"""An artist and a label in Chromium against a real portal (gunicorn, Anvil, SQLite).

`test_artist_and_label_in_the_browser` runs today: sign-ups, the registration form (check-digit
error, live split sum, METERED terms), the registration shown as pending, the work page with its
charts over index rows, the balance and a statement download, a label's token reading the API.

The on-chain half (gasless registration through the ledger's forwarder, plays through the real
ingest, relayed and indexed, distribute, withdraw with 0 ETH) is test_portal_on_chain.py, on a
chain and index of its own (this module's index holds hand-written rows).
"""

from __future__ import annotations

import csv
import io
import json

import requests

from ledger import accounts
from ledger.statements import Period, statement
from tests.browser.browser_support import PASSWORD, fill_work, install_wallet, sign_up


def test_artist_and_label_in_the_browser(portal, new_page):
    from tests.webapp.portal_seed import seed

    label = new_page()
    sign_up(label, "lbl", ["label"])
    assert label.page.url.endswith("/label/")
    assert "No works name you as a payee" in label.page.content()

    artist = new_page()
    artist.page.goto("/")
    artist.shot("01-home")
    sign_up(artist, "ada", ["artist"])
    assert artist.page.url.endswith("/artist/")
    assert "No works yet" in artist.page.content()
    artist.shot("02-works-empty")

    page = artist.page
    page.click("#new-work")
    fill_work(page, "T-034.524.680-2", "ada", "lbl")
    assert page.text_content("#split-sum").startswith("10,000 / 10,000")  # the live sum check
    page.fill("#payees-1-bps", "2000")
    assert page.text_content("#split-sum").startswith("9,000")
    page.fill("#payees-1-bps", "3000")
    page.click("#add-payee")
    assert page.locator("tr.split-row").count() == 3
    artist.shot("03-register-form")
    page.click("#register")
    assert "has a wrong check digit: 2, expected 1" in page.content()
    artist.shot("04-register-check-digit-error")
    page.fill("#iswc", "T0345246801")
    page.click("#register")
    page.wait_for_url("**/artist/")
    assert "Night Drive" in page.content() and "On the way to the chain" in page.content()
    artist.shot("05-works-pending")

    # The index as the indexer writes it after plays: a work of ada's with the label as payee.
    ada = accounts.find_user(portal.engine, "ada")
    lbl = accounts.find_user(portal.engine, "lbl")
    seeded = seed(portal.engine, ada.address, lbl.address, "0x" + "42" * 20)
    page.goto("/artist/")
    assert "Blue Hour" in page.content()
    page.click("text=Blue Hour")
    page.wait_for_selector("body[data-charts-ready='1']", state="attached")
    plays = page.evaluate("Chart.getChart('time-chart').data.datasets[0].data.reduce((a, b) => a + b, 0)")
    assert plays == seeded.plays_w1
    assert page.evaluate("Chart.getChart('territory-chart').data.labels") == ["GB", "other"]
    artist.shot("06-work-page-by-day")
    page.click("button[data-granularity=month]")
    assert page.evaluate("Chart.getChart('time-chart').data.labels") == ["2026-10", "2026-11"]
    artist.shot("07-work-page-by-month")

    page.goto("/artist/balance")
    assert page.text_content("#balance") == "$0.0355"
    artist.shot("08-balance")
    with page.expect_download() as download:
        page.click("#download-statement")
    text = download.value.path().read_text()
    assert text == statement(portal.engine, ada.address, Period()).to_csv()
    total = list(csv.reader(io.StringIO(text)))[-1]
    assert total[0] == "TOTAL" and int(total[-1]) == seeded.net_alice

    lpage = label.page
    lpage.goto("/label/")
    lpage.click("#logout")
    lpage.goto("/login")
    lpage.fill("#username", "lbl")
    lpage.fill("#password", PASSWORD)
    lpage.click("#submit")
    lpage.wait_for_url("**/label/")
    assert "Blue Hour" in lpage.content() and lpage.text_content("#label-net") == "$0.0195"
    lpage.wait_for_selector("body[data-charts-ready='1']", state="attached")
    assert lpage.evaluate("Chart.getChart('time-chart').data.labels") == ["2026-10", "2026-11"]
    assert lpage.evaluate("document.getElementById('territory-chart').getBoundingClientRect().height") > 50
    label.shot("09-label-dashboard")
    lpage.goto("/label/tokens")
    lpage.fill("#name", "royalty system")
    lpage.click("#create-token")
    token = lpage.text_content("#new-token").strip()
    label.shot("10-label-token-created")
    headers = {"Authorization": f"Bearer {token}"}
    works = requests.get(portal.url + "/api/v1/works", headers=headers, timeout=10).json()
    assert [w["workId"] for w in works["items"]] == [1] and works["items"][0]["accrued"] == str(seeded.gross_w1)
    api_statement = requests.get(portal.url + "/api/v1/statements?period=all", headers=headers, timeout=10).json()
    assert api_statement == json.loads(statement(portal.engine, lbl.address, Period()).to_json())
    assert int(api_statement["totals"]["net"]) == seeded.net_label
    balance = requests.get(portal.url + "/api/v1/balances", headers=headers, timeout=10).json()
    assert balance["available"] == str(seeded.net_label)
    lpage.goto("/label/tokens")
    assert token not in lpage.content()  # shown once

    for p in (artist, label):
        assert not [m for m in p.problems if "Content Security Policy" in m or "Refused" in m], p.problems
        # the one 400 is the form sent with the bad check digit, answered with its errors
        assert [m for m in p.problems if "status of 400" not in m] == [], p.problems


def test_wallet_signs_in_with_ethereum(portal, new_page):
    from eth_account import Account

    wallet = Account.create()
    p = new_page()
    install_wallet(p, wallet)
    p.page.goto("/login")
    p.shot("12-login-siwe")
    p.page.click("#siwe-button")
    p.page.wait_for_url("**/artist/")
    assert "Signed in with Ethereum" in p.page.content()
    user = accounts.find_user(portal.engine, wallet.address.lower())
    assert user is not None and user.wallet and user.address == wallet.address
    p.page.goto("/account")
    assert wallet.address in p.page.content() and "your own wallet signs your actions" in p.page.content()
    assert [m for m in p.problems if "status of 4" not in m] == [], p.problems
