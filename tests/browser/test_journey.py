"""The whole journey in Chromium, on the real contracts (own Anvil), the portal under gunicorn,
Mosquitto and an SQLite index; nobody but the relayers holds ETH.

1. An artist signs up and registers a work with a 2-payee split (artist and label) and METERED
   terms, through the forwarder.
2. A licensee signs up, mints devnet test tokens, tops up escrow with a permit, puts the work in
   the basket and buys a METERED license with its limits.
3. Two device keys made by `scripts/device.py keygen`; the licensee registers one by uploading
   `register-proof --json` (the command the register page shows) and one by pasting the bare
   signature, then downloads the HTTP and the MQTT provisioning files.
4. `scripts/device.py`, with those files as downloaded, reports plays over HTTP (`play` + `flush`)
   and over MQTT (`replay` of a play log) to this portal's ingest and MQTT consumer.
5. The device pages show the batches pending, then charged once the relayer and the indexer ran;
   the escrow page shows the charge.
6. The artist sees the plays on the work page and its chart, distributes, withdraws and downloads
   a statement whose total is the balance change, to the unit.
Screenshots of every main page go to test-output/screenshots/journey-*.png.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import time
import uuid

from eth_account import Account
from playwright.sync_api import expect

from ledger import accounts, gasless
from ledger.chain import LedgerClient, LicenseKind
from ledger.indexer import Indexer
from ledger.relayer import Relayer
from ledger.statements import Period, statement
from tests.browser.browser_support import device_cmd, fill_work, sign_up
from webapp.money import usd

USD = 10**6
RATE = 1_000  # fill_work's METERED rate: $0.001 a play
HTTP_PLAYS, MQTT_PLAYS = 40, 25
TIMEOUT = 60_000  # ms: pages that wait on a relayed transaction, on a loaded machine


def _text(locator) -> str:
    return re.sub(r"\s+", " ", locator.inner_text())


def test_whole_journey(portal, mqtt_ingest, new_page, tmp_path):
    chain, engine = portal.chain, portal.engine
    w3, deployment = chain.w3, chain.deployment
    ledger = LedgerClient(w3, deployment)
    run = uuid.uuid4().hex[:6]
    artist_name, label_name, venue_name = f"ada-{run}", f"label-{run}", f"venue-{run}"
    title = f"Harbour Lights {run}"

    def index():
        Indexer(engine, w3, deployment, progress=False).run()

    def relay():
        Relayer(w3, deployment, Account.from_key(portal.env["LEDGER_RELAYER_KEY"]), engine).run(once=True)

    # 1. The artist registers a work: split 70% artist / 30% label, METERED at $0.001 a play.
    label = new_page()
    sign_up(label, label_name, ["label"])
    artist = new_page()
    sign_up(artist, artist_name, ["artist"])
    ada = accounts.find_user(engine, artist_name)
    page = artist.page
    page.set_default_timeout(TIMEOUT)
    page.goto("/artist/works/new")
    fill_work(page, "T-034.524.680-1", artist_name, label_name)
    page.fill("#title", title)
    page.click("#register")
    page.wait_for_url("**/artist/")
    assert "Confirmed on chain" in page.content()
    [registration] = [a for a in gasless.actions_of(engine, ada.id) if a.kind == "register_work"]
    work_id = registration.work_id
    assert ledger.works.functions.ownerOf(work_id).call() == ada.address
    index()
    page.goto("/artist/")
    expect(page.locator("body")).to_contain_text(title)
    artist.shot("journey-01-artist-works")

    # 2. The licensee: test tokens, a top-up by permit, a METERED license bought from the basket.
    lic = new_page()
    sign_up(lic, venue_name, ["licensee"])
    venue = accounts.find_user(engine, venue_name)
    lp = lic.page
    lp.wait_for_url(portal.url + "/licensee/")  # a licensee starts at the catalogue
    lp.set_default_timeout(TIMEOUT)
    lp.goto("/licensee/escrow")
    lp.fill("#mint-amount", "1000")
    with lp.expect_navigation():
        lp.click("#mint")
    expect(lp.locator("#token-balance")).to_have_text("$1,000.00")
    lp.fill("#topup-amount", "20")
    with lp.expect_navigation():
        lp.click("#top-up")
    expect(lp.locator("#escrow-balance")).to_have_text("$20.00")
    assert ledger.escrow_of(venue.address) == 20 * USD
    index()
    lp.goto("/licensee/?q=" + title.replace(" ", "+"))
    expect(lp.locator("#catalogue")).to_contain_text(title)
    lic.shot("journey-02-licensee-catalogue")
    with lp.expect_navigation():
        lp.click(f"#add-{work_id}")
    lp.goto("/licensee/basket")
    expect(lp.locator("#basket")).to_contain_text(title)
    lp.select_option("#kind", "METERED")
    expect(lp.locator("#max_rate")).to_have_value("0.001")  # defaulted to the current terms
    lp.fill("#max_fee", "0.50")
    lp.fill("#min_expiry", time.strftime("%Y-%m-%d", time.gmtime(time.time() + 300 * 86_400)))
    lic.shot("journey-03-licensee-basket")
    with lp.expect_navigation():
        lp.click("#checkout")
    lp.wait_for_url("**/licensee/licenses")
    rate, expiry = ledger.license_of(venue.address, work_id, LicenseKind.METERED)
    assert rate == RATE and expiry > time.time() + 300 * 86_400
    index()
    lp.reload()
    expect(lp.locator("body")).to_contain_text(title)
    expect(lp.locator("body")).to_contain_text("METERED")
    lic.shot("journey-04-licensee-licenses")

    # 3. Two devices: keys made on the device, registered in the browser, provisioning downloaded.
    lp.goto("/licensee/devices/register")
    commands = lp.text_content("#device-commands")
    [proof_line] = [line for line in commands.splitlines() if "register-proof" in line]
    proof_args = shlex.split(proof_line.split(">")[0])[1:]  # the page's command, without `device.py`
    assert proof_args[:3] == ["register-proof", "--licensee", venue.address]

    def register(state, name, territory, *, upload):
        state.mkdir()
        address = device_cmd(state, "keygen").strip()
        lp.goto("/licensee/devices/register")
        if upload:  # the --json output, uploaded as a file
            proof = state.parent / f"{state.name}-proof.json"
            proof.write_text(device_cmd(state, *proof_args))
            lp.set_input_files("#proof_file", str(proof))
        else:  # the bare signature, pasted with the device address
            bare = [a for a in proof_args if a != "--json"]
            lp.fill("#proof", device_cmd(state, *bare).strip())
            lp.fill("#device", address)
        lp.fill("#name", name)
        lp.fill("#territory", territory)
        with lp.expect_navigation():
            lp.click("#register")
        lp.wait_for_url(f"**/licensee/devices/{address}")
        expect(lp.locator("h1")).to_contain_text("active")
        return address

    def download(state, address, transport):
        lp.goto(f"/licensee/devices/{address}")
        with lp.expect_download() as got:
            lp.click(f"#download-{transport}")
        got.value.save_as(state / "provisioning.json")
        return json.loads((state / "provisioning.json").read_text())

    bar_state, shop_state = tmp_path / "bar", tmp_path / "shop"
    bar = register(bar_state, "Bar, main room", "GB", upload=True)
    shop = register(shop_state, "Shop", "fr", upload=False)
    for address in (bar, shop):
        assert ledger.device_id_of(address) >> 32 == ledger.licensee_index_of(venue.address)
    http_file = download(bar_state, bar, "http")
    mqtt_file = download(shop_state, shop, "mqtt")
    assert http_file["endpoint"] == portal.url + "/api/v1/batches" and http_file["transport"] == "http"
    assert http_file["deviceId"] == str(ledger.device_id_of(bar))
    assert mqtt_file["transport"] == "mqtt" and mqtt_file["mqttUrl"] == portal.env["LEDGER_PUBLIC_MQTT_URL"]
    assert mqtt_file["mqttTopicPrefix"] == portal.mqtt_topic_prefix
    assert w3.eth.get_balance(venue.address) == 0  # the licensee never needed ETH

    # 4. The devices report plays, with the files as downloaded: HTTP (play + flush), MQTT (replay).
    now = w3.eth.get_block("latest")["timestamp"] + 1  # after the registrations, by the chain's clock
    device_cmd(bar_state, "play", "--work", work_id, "--count", HTTP_PLAYS, "--at", now)
    device_cmd(bar_state, "flush")
    log = tmp_path / "shop-plays.csv"
    log.write_text("timestamp,work_id\n" + "".join(f"{now + i // 10},{work_id}\n" for i in range(MQTT_PLAYS)))
    device_cmd(shop_state, "replay", log)
    for state, transport in ((bar_state, "http"), (shop_state, "mqtt")):
        status = json.loads(device_cmd(state, "status", "--json"))
        assert status["lastAck"]["nonce"] == 0 and status["spooledBatches"] == 0, status
        assert status["server"]["transport"] == transport and status["rejectedBatches"] == 0

    # 5. Pending, then charged after the relayer and the indexer.
    lp.goto(f"/licensee/devices/{bar}")
    expect(lp.locator("#pending-count")).to_have_text("1")
    lp.goto("/licensee/devices/")
    expect(lp.locator("#waiting")).to_contain_text(f"2 batches, {HTTP_PLAYS + MQTT_PLAYS} plays")
    lic.shot("journey-05-licensee-devices-pending")
    relay()
    index()
    plays = HTTP_PLAYS + MQTT_PLAYS
    charged = plays * RATE
    assert ledger.escrow_of(venue.address) == 20 * USD - charged
    for address, count in ((bar, HTTP_PLAYS), (shop, MQTT_PLAYS)):
        lp.goto(f"/licensee/devices/{address}")
        expect(lp.locator("#pending-count")).to_have_text("0")
        expect(lp.locator("#batches")).to_contain_text("charged")
        row = f"#{work_id} {title} {count} {count} {usd(count * RATE)} 0"
        assert row in _text(lp.locator("#plays-by-work")), _text(lp.locator("#plays-by-work"))
    lp.goto(f"/licensee/devices/{bar}")
    lic.shot("journey-06-licensee-device")
    lp.goto("/licensee/devices/")
    expect(lp.locator("#all-clear")).to_be_visible()
    expect(lp.locator("#devices")).to_contain_text("Bar, main room")
    lic.shot("journey-07-licensee-devices")
    lp.goto("/licensee/escrow")
    expect(lp.locator("#charged-recent")).to_have_text(usd(charged))
    expect(lp.locator("#escrow-balance")).to_have_text(usd(20 * USD - charged))
    lic.shot("journey-08-licensee-escrow")

    # 6. The artist: plays on the work page and chart, distribute, withdraw, statement.
    page.goto(f"/artist/works/{work_id}")
    page.wait_for_selector("body[data-charts-ready='1']", state="attached")
    expect(page.locator("#total-plays")).to_have_text(str(plays))
    expect(page.locator("#total-earned")).to_have_text(usd(charged))
    chart = json.loads(page.text_content("#chart-data"))
    assert sum(chart["day"]["plays"]) == sum(chart["territory"]["plays"]) == plays  # what the charts draw
    artist.shot("journey-09-work-page")
    with page.expect_navigation():
        page.click("#distribute")
    index()
    share = charged * 7_000 // 10_000
    assert ledger.token_balance(ada.address) == 0
    before = statement(engine, ada.address, Period()).totals.net
    assert before == share
    page.goto("/artist/balance")
    expect(page.locator("#balance")).to_have_text(usd(share))
    artist.shot("journey-10-artist-balance")
    page.fill("#to", ada.address)
    with page.expect_navigation():
        page.click("#withdraw")
    index()
    assert ledger.token_balance(ada.address) == share  # the balance change
    assert w3.eth.get_balance(ada.address) == 0  # nobody needs ETH
    with page.expect_download() as got:
        page.click("#download-statement")
    total = list(csv.reader(io.StringIO(got.value.path().read_text())))[-1]
    assert int(total[-1]) == share

    lbl = label.page  # the label's dashboard: its 30% of the same plays
    lbl.goto("/label/")
    expect(lbl.locator("#label-works")).to_contain_text(title)
    expect(lbl.locator("#label-net")).to_have_text(usd(charged - share))
    label.shot("journey-11-label-dashboard")
    for p in (artist, lic, label):
        assert not [m for m in p.problems if "Content Security Policy" in m], p.problems
