"""The licensee's device pages on SQLite and PostgreSQL: devices and their batches (pending,
charged, skipped with what to do), plays by work, provisioning files scripts/device.py reads as
they are, revocation (CSRF, gasless action queued), and nobody sees another licensee's devices.

The proof checks against a real chain are in test_devices_chain.py."""

from __future__ import annotations

import json
import re

import pytest
from devices_seed import LEDGER, seed_devices
from portal_support import PASSWORD, SECRET, Portal, csrf_of, make_app

from ledger import accounts, devices, gasless


@pytest.fixture
def lic2(engine, users):
    return accounts.create_user(engine, "lic2", PASSWORD, ["licensee"], SECRET)


@pytest.fixture
def dseed(engine, users, lic2):
    return seed_devices(engine, users["lic"], lic2)


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.data.decode()))


def test_devices_page_lists_own_devices_and_what_waits_or_was_skipped(as_user, dseed):
    lic = as_user("lic")
    response = lic.get("/licensee/devices/")
    assert response.status_code == 200
    page = response.data.decode()
    text = _text(response)
    assert dseed.bar in page and dseed.shop in page
    assert dseed.rival not in page and "Rival" not in page  # lic2's device
    # Pending and skipped: Bar's pending 1 and 2 (escrow), Shop's inflight 0; Bar's 3 and 4 skipped
    waiting = page[page.index('id="waiting"') : page.index('id="skipped"')]
    assert waiting.count("<tr>") == 1 + 3
    assert "Top up your escrow" in waiting or "top up your escrow" in waiting
    skipped = _text_between(page, 'id="skipped"', 'id="unlicensed"')
    assert "DeviceRevoked" in skipped and "register its key again" in skipped
    assert "BadTimeRange" in skipped and "clock" in skipped
    unlicensed = _text_between(page, 'id="unlicensed"', "</section>")
    assert "Buy a license for work 2" in unlicensed and "Bob's Song" in unlicensed
    assert "work 1" not in unlicensed  # licensed
    assert "Nothing is waiting" not in text


def _text_between(page: str, start: str, end: str) -> str:
    chunk = page[page.index(start) : page.index(end, page.index(start))]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", chunk)).replace("&#39;", "'")


def test_device_page_shows_last_batch_pending_skipped_and_plays_by_work(as_user, dseed):
    response = as_user("lic").get(f"/licensee/devices/{dseed.bar}")
    assert response.status_code == 200
    page = response.data.decode()
    assert "Bar" in page and "United Kingdom" in page
    assert re.search(r'id="pending-count">2<', page)  # batches 1 and 2 (held for escrow)
    assert re.search(r'id="skipped-count">2<', page)  # batches 3 and 4
    assert "batch #3" in page  # the last batch received (3, at T0 + 30; 4 was seen on chain only)
    works = _text_between(page, 'id="plays-by-work"', "</article>")
    # work 1: 30 on chain, all licensed, $0.03 charged, 7 + 5 pending; work 2: 4 unlicensed, 1 pending
    assert re.search(r"#1 Blue Hour 30 30 \$0\.03 12", works), works
    assert re.search(r"#2 Bob's Song 4 0 \$0\.00 1 4 unlicensed: buy a license for work 2", works), works
    assert "Rival" not in page


def test_shop_shows_its_inflight_batch_only(as_user, dseed):
    page = as_user("lic").get(f"/licensee/devices/{dseed.shop}").data.decode()
    assert re.search(r'id="pending-count">1<', page) and re.search(r'id="skipped-count">0<', page)
    assert "on its way to the chain" in page


@pytest.mark.parametrize(
    "path",
    ["/licensee/devices/{rival}", "/licensee/devices/{rival}/provisioning.json", "/licensee/devices/0x1234"],
)
def test_another_licensees_device_is_not_found(as_user, dseed, path):
    response = as_user("lic").get(path.format(rival=dseed.rival))
    assert response.status_code == 404
    assert dseed.rival not in response.data.decode() or "0x1234" in path


def test_another_licensee_cannot_revoke_a_device(as_user, engine, users, dseed):
    lic = as_user("lic")
    token = csrf_of(lic.get("/licensee/devices/").data)
    assert lic.client.post(f"/licensee/devices/{dseed.rival}/revoke", data={"csrf_token": token}).status_code == 404
    assert gasless.actions_of(engine, users["lic"].id) == []


def test_revoke_needs_the_csrf_token(as_user, engine, users, dseed):
    lic = as_user("lic")
    assert lic.client.post(f"/licensee/devices/{dseed.bar}/revoke", data={}).status_code == 400
    assert gasless.actions_of(engine, users["lic"].id) == []


def test_revoke_is_queued_and_shown_revoking_until_confirmed(as_user, engine, users, dseed):
    lic = as_user("lic")
    token = csrf_of(lic.get(f"/licensee/devices/{dseed.bar}").data)
    response = lic.client.post(f"/licensee/devices/{dseed.bar}/revoke", data={"csrf_token": token})
    assert response.status_code == 302
    (action,) = gasless.actions_of(engine, users["lic"].id)
    assert (action.kind, action.status, action.arguments["device_id"]) == ("revoke_device", "queued", dseed.bar_id)
    page = lic.get(f"/licensee/devices/{dseed.bar}").data.decode()
    assert "Queued" in page and ">revoking<" in page and 'id="revoke"' not in page
    listing = lic.get("/licensee/devices/").data.decode()
    assert "revoke device" in listing and dseed.bar in listing
    # a second revocation while the first is on its way is refused
    token = csrf_of(page)
    assert lic.client.post(f"/licensee/devices/{dseed.bar}/revoke", data={"csrf_token": token}).status_code == 409


def test_provisioning_file_is_what_device_script_reads(app, engine, users, dseed, tmp_path, device_module):
    portal = Portal(
        make_app(engine, public_url="https://portal.example.org", public_mqtt_url="mqtts://mq.example.org:8883")
    )
    portal.login("lic")
    for transport in ("http", "mqtt"):
        response = portal.get(f"/licensee/devices/{dseed.bar}/provisioning.json?transport={transport}")
        assert response.status_code == 200
        assert "attachment" in response.headers["Content-Disposition"]
        path = tmp_path / f"{transport}.json"
        path.write_bytes(response.data)
        prov = device_module.Provisioning.load(str(path))
        assert prov.device == dseed.bar and prov.device_id == dseed.bar_id
        assert prov.licensee == users["lic"].address and prov.transport == transport
        assert (prov.chain_id, prov.ledger) == (31337, LEDGER)
        assert prov.endpoint == "https://portal.example.org/api/v1/batches"
        assert prov.mqtt_url == "mqtts://mq.example.org:8883"
        assert prov.topic_prefix == "plays"


def test_provisioning_defaults_to_this_server_and_never_hands_out_broker_credentials(engine, users, dseed, tmp_path):
    from ledger.config import Settings

    app = make_app(engine)
    app.config["LEDGER_SETTINGS"] = Settings.from_env().with_(
        rpc_url="http://127.0.0.1:9",
        database_url=str(engine.url),
        mqtt_url="mqtt://ingest:hunter2@broker.internal:1884",
        mqtt_topic_prefix="venue/plays",
    )
    portal = Portal(app)
    portal.login("lic")
    doc = portal.get(f"/licensee/devices/{dseed.shop}/provisioning.json", base_url="https://localhost:8443").get_json()
    assert doc["endpoint"] == "https://localhost:8443/api/v1/batches"
    assert doc["mqttUrl"] == "mqtt://broker.internal:1884" and "hunter2" not in json.dumps(doc)
    assert doc["mqttTopicPrefix"] == "venue/plays" and doc["deviceId"] == str(dseed.shop_id)
    assert portal.get(f"/licensee/devices/{dseed.shop}/provisioning.json?transport=carrier-pigeon").status_code == 400


def test_provisioning_waits_for_a_confirmed_registration(as_user, engine, users):
    address = "0x" + "ab" * 20
    row = devices.add_device(engine, users["lic"].id, address, "New", "GB", 31337, LEDGER)
    action = gasless.queue_action(engine, users["lic"].id, "register_device", {"device": address})
    devices.update_device(engine, row.id, register_action_id=action.id)
    lic = as_user("lic")
    checksum = row.address
    page = lic.get(f"/licensee/devices/{checksum}").data.decode()
    assert ">registering<" in page and "download-http" not in page
    response = lic.get(f"/licensee/devices/{checksum}/provisioning.json")
    assert response.status_code == 409 and "confirmed" in response.data.decode()


def test_register_form_refuses_bad_input_before_the_chain(as_user, engine, users):
    lic = as_user("lic")
    page = lic.get("/licensee/devices/register")
    assert page.status_code == 200 and users["lic"].address in page.data.decode()
    cases = [
        ({"proof": "0x" + "11" * 65, "device": "0x" + "ab" * 20, "name": "Bar", "territory": "XX"}, "ISO 3166"),
        ({"proof": "hello", "device": "0x" + "ab" * 20, "name": "Bar", "territory": "GB"}, "not hexadecimal"),
        ({"proof": "0x" + "11" * 64, "device": "0x" + "ab" * 20, "name": "Bar", "territory": "GB"}, "has 64 bytes"),
        ({"proof": "", "device": "0x" + "ab" * 20, "name": "Bar", "territory": "GB"}, "paste the proof"),
        ({"proof": '{"device": "0x12"}', "name": "Bar", "territory": "GB"}, "no &#34;signature&#34;"),
        ({"proof": "0x" + "11" * 65, "device": "0x" + "ab" * 20, "name": "", "territory": "GB"}, "required"),
    ]
    for data, message in cases:
        response = lic.post_form("/licensee/devices/register", data)
        assert response.status_code == 400, data
        assert message in response.data.decode(), (message, _text(response)[:2000])
    assert gasless.actions_of(engine, users["lic"].id) == [] and devices.portal_rows(engine, users["lic"].id) == []


def test_register_without_a_chain_says_so_and_queues_nothing(as_user, engine, users):
    response = as_user("lic").post_form(
        "/licensee/devices/register",
        {"proof": "0x" + "11" * 65, "device": "0x" + "ab" * 20, "name": "Bar", "territory": "gb"},
    )
    assert response.status_code == 503 and "cannot be reached" in response.data.decode()
    assert gasless.actions_of(engine, users["lic"].id) == []


def test_register_needs_the_csrf_token(app, users):
    portal = Portal(app)
    portal.login("lic")
    response = portal.client.post(
        "/licensee/devices/register", data={"proof": "0x" + "11" * 65, "name": "x", "territory": "GB"}
    )
    assert response.status_code == 400 and "Form not accepted" in response.data.decode()


def test_empty_devices_page_says_how_to_start(as_user, users):
    page = as_user("lic").get("/licensee/devices/").data.decode()
    assert "No devices yet" in page and "device.py keygen" in page and 'href="/licensee/devices/register"' in page
    register = as_user("lic").get("/licensee/devices/register").data.decode()
    assert f"register-proof --licensee {users['lic'].address}" in register
    assert "Nothing is waiting" in page


def test_device_pages_are_not_cached(as_user, dseed):
    assert as_user("lic").get("/licensee/devices/").headers["Cache-Control"] == "no-store"


def test_rename_is_off_chain_and_own_devices_only(as_user, engine, users, dseed):
    lic = as_user("lic")
    token = csrf_of(lic.get(f"/licensee/devices/{dseed.bar}").data)
    response = lic.client.post(
        f"/licensee/devices/{dseed.bar}/name", data={"csrf_token": token, "name": "Bar, back room"}
    )
    assert response.status_code == 302
    assert "Bar, back room" in lic.get("/licensee/devices/").data.decode()
    assert gasless.actions_of(engine, users["lic"].id) == []  # nothing on chain
    assert (
        lic.client.post(f"/licensee/devices/{dseed.bar}/name", data={"csrf_token": token, "name": ""}).status_code
        == 400
    )
    assert lic.client.post(f"/licensee/devices/{dseed.bar}/name", data={"name": "x"}).status_code == 400  # no CSRF
    rival = lic.client.post(f"/licensee/devices/{dseed.rival}/name", data={"csrf_token": token, "name": "Mine"})
    assert rival.status_code == 404
    assert [r.name for r in devices.portal_rows(engine, users["lic"].id)] == ["Shop", "Bar, back room"]


def test_device_page_counts_charged_batches_in_words(as_user, dseed):
    lic = as_user("lic")
    bar = lic.get(f"/licensee/devices/{dseed.bar}").data.decode()
    assert re.search(r'id="charged-count">1 batch charged<', bar)  # batch 0
    shop = lic.get(f"/licensee/devices/{dseed.shop}").data.decode()
    assert re.search(r'id="charged-count">0 batches charged<', shop)
    assert "11 plays not on chain yet" in shop  # its inflight batch


def test_unlicensed_limit_batch_on_the_device_page_links_to_the_catalogue(as_user, engine, dseed):
    from devices_seed import T0, _pending

    from ledger.db import session_scope

    with session_scope(engine) as session:
        session.add(_pending(dseed.shop, dseed.shop_id, 1, {2: 9}, "pending", "UnlicensedLimit", received=T0 + 60))
    page = as_user("lic").get(f"/licensee/devices/{dseed.shop}").data.decode()
    skipped = page[page.index('id="skipped"') : page.index("</article>", page.index('id="skipped"'))]
    assert re.search(r"<td>#1</td><td class=\"num\">9</td>", skipped), skipped
    assert '<a href="/licensee/">Buy a license</a>' in skipped
    assert "today&#39;s allowance of unlicensed plays" in skipped or "today's allowance" in skipped


LICENSEE_PAGES = [
    "/licensee/",
    "/licensee/basket",
    "/licensee/licenses",
    "/licensee/escrow",
    "/licensee/actions",
    "/licensee/devices/",
    "/licensee/devices/register",
    "/licensee/devices/{bar}",
]


@pytest.mark.parametrize("path", LICENSEE_PAGES)
def test_every_licensee_page_has_the_licensee_navigation(as_user, dseed, path):
    page = as_user("lic").get(path.format(bar=dseed.bar)).data.decode()
    nav = page[page.index('<nav class="subnav" aria-label="Licensee">') : page.index("</nav>", page.index("subnav"))]
    links = re.findall(r'<a href="([^"]+)"', nav)
    assert links == [
        "/licensee/",
        "/licensee/basket",
        "/licensee/licenses",
        "/licensee/escrow",
        "/licensee/devices/",
        "/licensee/actions",
    ]
    (current,) = re.findall(r'<a href="([^"]+)"[^>]*aria-current="page"', nav)
    assert current == (path if path in links else "/licensee/devices/")
