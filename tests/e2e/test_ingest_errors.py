"""Every bad batch gets its own 4xx code and a JSON error; nothing bad is ever stored."""

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
import requests
from eth_account import Account

from ledger import playbatch

from .conftest import (
    MQTT_HOST,
    MQTT_PORT,
    TOPIC_PREFIX,
    apply_on_chain,
    make_ctx,
    register_device,
    signed_payload,
    stored_count,
)


def post(server, body) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url, data=data, headers={"Content-Type": "application/json"}, timeout=10)


def assert_error(resp: requests.Response, status: int, code: str):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_revoked_device_is_refused_for_plays_after_its_revocation(world, engine, http_server, registered):
    account, device_id = registered
    world.licensee.revoke_device(device_id)
    revoked_at = world.admin.device_info(device_id)[2]
    payload = signed_payload(account, world, 0, {world.works[0]: 1}, from_time=revoked_at + 1, to_time=revoked_at + 2)
    assert_error(post(http_server, payload), 403, "device_revoked")
    assert stored_count(engine) == 0


def test_plays_before_a_revocation_stay_chargeable(world, engine, http_server, registered):
    account, device_id = registered
    played = signed_payload(account, world, 0, {world.works[0]: 1})  # ended before the revocation below
    world.licensee.revoke_device(device_id)
    assert post(http_server, played).status_code == 202
    assert stored_count(engine) == 1


def test_unknown_device_is_refused(world, engine, http_server):
    payload = signed_payload(Account.create(), world, 0, {world.works[0]: 1})
    assert_error(post(http_server, payload), 403, "unknown_device")
    assert stored_count(engine) == 0


def test_signature_of_another_key_is_refused(world, engine, http_server, registered):
    account, _ = registered
    payload = signed_payload(Account.create(), world, 0, {world.works[0]: 1})
    payload["device"] = account.address
    assert_error(post(http_server, payload), 401, "bad_signature")
    assert stored_count(engine) == 0


def test_tampered_counts_break_the_signature(world, engine, http_server, registered):
    account, _ = registered
    payload = signed_payload(account, world, 0, {world.works[0]: 1})
    payload["entries"] = "0x" + playbatch.encode_entries({world.works[0]: 1000}).hex()
    assert_error(post(http_server, payload), 401, "bad_signature")
    assert stored_count(engine) == 0


def test_nonce_used_on_chain_is_refused(world, sqlite_engine, registered):
    from .conftest import HttpIngestServer, make_ctx

    account, device_id = registered
    apply_on_chain(world, account, device_id, 0, {world.works[0]: 2})  # by someone else, not our store
    server = HttpIngestServer(make_ctx(world, sqlite_engine)).start()
    try:
        resp = post(server, signed_payload(account, world, 0, {world.works[1]: 3}))
    finally:
        server.stop()
    assert_error(resp, 409, "nonce_used")
    assert stored_count(sqlite_engine) == 0


def test_batch_of_10000_works_is_refused(world, engine, http_server, registered):
    account, _ = registered
    entries = [[work, 1] for work in range(1, 10_001)]
    payload = signed_payload(account, world, 0, {world.works[0]: 1})
    payload["entries"] = entries
    assert_error(post(http_server, payload), 422, "too_many_entries")
    payload["entries"] = "0x" + b"".join(work.to_bytes(4, "big") + b"\x00\x01" for work in range(1, 10_001)).hex()
    assert_error(post(http_server, payload), 422, "too_many_entries")
    assert stored_count(engine) == 0


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'{"device": "0x12",'])
def test_malformed_json_is_refused(world, engine, http_server, body):
    assert_error(post(http_server, body), 400, "malformed_json")
    assert stored_count(engine) == 0


def test_different_batch_under_a_stored_nonce_is_a_conflict(world, engine, http_server, registered):
    account, _ = registered
    first = post(http_server, signed_payload(account, world, 5, {world.works[0]: 1}))
    assert first.status_code == 202
    assert_error(post(http_server, signed_payload(account, world, 5, {world.works[0]: 2})), 409, "nonce_conflict")
    assert stored_count(engine) == 1


@pytest.mark.parametrize(
    "change,code",
    [
        (lambda p, w: p.update(fromTime=p["toTime"] + 1), "bad_time_range"),
        (lambda p, w: p.update(fromTime=0, toTime=0), "bad_time_range"),
        (lambda p, w: p.update(entries=[[w.works[1], 1], [w.works[0], 1]]), "invalid_entries"),
        (lambda p, w: p.update(entries=[[w.works[0], 0]]), "invalid_entries"),
        (lambda p, w: p.update(entries=[[w.works[0], 70_000]]), "invalid_entries"),
        (lambda p, w: p.update(entries=[]), "invalid_entries"),
        (lambda p, w: p.update(entries="0x00000001"), "invalid_entries"),
        (lambda p, w: p.pop("signature"), "invalid_batch"),
        (lambda p, w: p.update(nonce=2**32), "invalid_batch"),
        (lambda p, w: p.update(nonce="7"), "invalid_batch"),
        (lambda p, w: p.update(device="0x1234"), "invalid_batch"),
        (lambda p, w: p.update(signature="0x" + "00" * 10), "invalid_batch"),
    ],
)
def test_bad_shapes_are_refused_with_their_code(world, sqlite_engine, registered, change, code):
    from .conftest import HttpIngestServer, make_ctx

    account, _ = registered
    payload = signed_payload(account, world, 0, {world.works[0]: 1})
    change(payload, world)
    server = HttpIngestServer(make_ctx(world, sqlite_engine)).start()
    try:
        assert_error(post(server, payload), 422, code)
    finally:
        server.stop()
    assert stored_count(sqlite_engine) == 0


def test_batch_from_the_future_is_refused(world, engine, http_server, registered):
    account, _ = registered
    later = int(time.time()) + 86_400
    payload = signed_payload(account, world, 0, {world.works[0]: 1}, from_time=later, to_time=later)
    assert_error(post(http_server, payload), 422, "bad_time_range")
    assert stored_count(engine) == 0


def test_oversized_body_is_refused(world, engine, http_server):
    assert_error(post(http_server, b" " * (300 * 1024)), 413, "payload_too_large")


def test_each_fault_of_the_issue_has_its_own_code():
    from ledger import ingest

    codes = [
        ingest.DeviceRevoked.code,
        ingest.BadSignature.code,
        ingest.NonceUsed.code,
        ingest.TooManyEntries.code,
        ingest.MalformedJson.code,
    ]
    assert len(set(codes)) == len(codes)
    assert all(400 <= cls.status < 500 for cls in ingest.ERROR_CLASSES if cls is not ingest.Unavailable)


# ----------------------------------------------------------------------------- MQTT error acks


def _mqtt_roundtrip(topic_device: str, payload: bytes) -> dict:
    got, ready = [], threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"e2e-dev-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda c, u, m: (got.append(json.loads(m.payload)), ready.set())
    client.on_subscribe = lambda *a, **k: subscribed.set()
    subscribed = threading.Event()
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    try:
        client.subscribe(f"{TOPIC_PREFIX}/{topic_device.lower()}/ack", qos=1)
        assert subscribed.wait(5)
        client.publish(f"{TOPIC_PREFIX}/{topic_device.lower()}", payload, qos=1)
        assert ready.wait(10), "no ack"
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]


def test_mqtt_errors_are_acknowledged_with_the_same_json(world, sqlite_engine, mqtt_consumer_factory, registered):
    account, _ = registered
    mqtt_consumer_factory(sqlite_engine)
    ack = _mqtt_roundtrip(account.address, b"{oops")
    assert (ack["status"], ack["error"]["code"]) == (400, "malformed_json")

    other = Account.create()
    payload = signed_payload(account, world, 3, {world.works[0]: 1})
    ack = _mqtt_roundtrip(other.address, json.dumps(payload).encode())  # on another device's topic
    assert (ack["status"], ack["nonce"], ack["error"]["code"]) == (403, 3, "topic_mismatch")
    assert stored_count(sqlite_engine) == 0

    ack = _mqtt_roundtrip(account.address, json.dumps(payload).encode())
    assert (ack["status"], ack["nonce"], ack["state"]) == (202, 3, "pending")
    assert stored_count(sqlite_engine) == 1


def test_database_or_node_down_is_503_so_the_device_retries(world, sqlite_engine, registered):
    from web3 import Web3

    from ledger.db import make_engine
    from ledger.ingest import ChainDevices, IngestContext, handle_json

    from .conftest import free_port, make_ctx

    account, _ = registered
    body = json.dumps(signed_payload(account, world, 0, {world.works[0]: 1}))
    dead_db = make_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test", connect_args={"connect_timeout": 2}
    )
    status, answer = handle_json(body, make_ctx(world, dead_db))
    assert (status, answer["error"]["code"]) == (503, "unavailable")

    dead_node = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    ctx = make_ctx(world, sqlite_engine)
    ctx = IngestContext(
        ctx.chain_id, ctx.ledger_address, ctx.sessions, ChainDevices.for_deployment(dead_node, world.deployment)
    )
    status, answer = handle_json(body, ctx)
    assert (status, answer["error"]["code"]) == (503, "unavailable")
    assert stored_count(sqlite_engine) == 0


def test_deeply_nested_json_is_a_malformed_batch_not_a_crash(world, sqlite_engine):
    from ledger.ingest import handle_json

    from .conftest import make_ctx

    body = b"[" * 100_000 + b"]" * 100_000
    status, answer = handle_json(body[:200_000], make_ctx(world, sqlite_engine))
    assert (status, answer["error"]["code"]) == (400, "malformed_json")
    assert stored_count(sqlite_engine) == 0


def test_a_batch_naming_an_unregistered_work_is_refused_and_nothing_stored(world, sqlite_engine, registered):
    from ledger.ingest import handle_json

    from .conftest import make_ctx

    account, _device_id = registered
    unknown = world.admin.total_works() + 1
    body = json.dumps(signed_payload(account, world, 0, {world.works[0]: 2, unknown: 1})).encode()
    status, answer = handle_json(body, make_ctx(world, sqlite_engine))
    assert (status, answer["error"]["code"]) == (422, "unknown_work")
    assert stored_count(sqlite_engine) == 0
    work = world.admin.register_work(title="Registered since")  # the cached total is read again
    assert work == unknown
    status, _ = handle_json(body, make_ctx(world, sqlite_engine))
    assert status == 202


# ----------------------------------------------------------------------------- per-device backlog


def test_a_device_backlog_is_bounded_over_http_and_mqtt(world, engine, registered, mqtt_consumer_factory):
    """A device with `max_unsettled` batches stored and not settled gets 429 device_backlog_full
    (over MQTT: that error ack) and nothing is stored; a resend of a stored batch still gets its
    202; once the relayer settles the backlog, the device's next batch is taken."""
    from .conftest import HttpIngestServer, relayer_for

    account, _ = registered
    server = HttpIngestServer(make_ctx(world, engine, max_unsettled=2)).start()
    try:
        first, second, third = (signed_payload(account, world, n, {world.works[0]: 1}) for n in range(3))
        assert post(server, first).status_code == 202
        assert post(server, second).status_code == 202
        refused = post(server, third)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "device_backlog_full"
        assert stored_count(engine) == 2
        again = post(server, second)  # a resend of a stored batch: answered as stored
        assert again.status_code == 202 and again.json()["nonce"] == 1
        other, _ = register_device(world)  # another device of the same licensee is not held back
        assert post(server, signed_payload(other, world, 0, {world.works[0]: 1})).status_code == 202

        mqtt_consumer_factory(engine, max_unsettled=2)
        ack = _mqtt_roundtrip(account.address, json.dumps(third).encode())
        assert (ack["status"], ack["nonce"], ack["error"]["code"]) == (429, 2, "device_backlog_full")
        assert stored_count(engine) == 3

        relayer_for(world, engine).run(once=True)  # the backlog settles on chain
        assert post(server, third).status_code == 202
        ack = _mqtt_roundtrip(
            account.address, json.dumps(signed_payload(account, world, 3, {world.works[1]: 2})).encode()
        )
        assert (ack["status"], ack["state"]) == (202, "pending")
        assert stored_count(engine) == 5
    finally:
        server.stop()


def test_the_device_script_keeps_a_batch_refused_for_a_full_backlog_and_delivers_it_later(
    world, sqlite_engine, new_device, tmp_path
):
    """device.py treats 429 device_backlog_full as retry-later: the batch stays spooled (no play
    dropped) and is delivered once the backlog has settled."""
    from .conftest import HttpIngestServer, relayer_for, write_plays

    server = HttpIngestServer(make_ctx(world, sqlite_engine, max_unsettled=1)).start()
    try:
        device = new_device("http", endpoint=server.url)
        start = world.w3.eth.get_block("latest")["timestamp"] - 3_000
        plays = [(start + 10 * i, world.works[i % 2]) for i in range(20)]
        device.cmd("replay", write_plays(tmp_path / "p.csv", plays), "--batch-size", 10, "--no-wait", check=False)
        device.cmd("flush", check=False)
        status = device.status()
        assert status["spooledBatches"] == 1 and status["spooledPlays"] == 10  # refused, kept
        assert stored_count(sqlite_engine) == 1
        relayer_for(world, sqlite_engine).run(once=True)
        device.cmd("flush")
        assert device.status()["spooledBatches"] == 0
        assert stored_count(sqlite_engine) == 2
    finally:
        server.stop()
