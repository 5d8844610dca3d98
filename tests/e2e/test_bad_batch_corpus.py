# ruff: noqa: E501 - the corpus is a table, one bad batch per line
"""A corpus of bad batches, sent through HTTP and through MQTT: each one gets the same documented
4xx status and error code on both transports, and nothing is stored.

Every batch in the corpus that carries a signature is signed for real (the fault is in what was
signed, not a broken signature), so the test shows that ingest refuses the content itself.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
import requests
from eth_account import Account

from ledger import playbatch

from .conftest import MQTT_HOST, MQTT_PORT, TOPIC_PREFIX, HttpIngestServer, make_ctx, signed_payload, stored_count


@dataclass(frozen=True)
class Bad:
    name: str
    build: Callable[..., bytes]  # (world, device account, another key) -> raw body
    status: int
    code: str


def _json(payload) -> bytes:
    return json.dumps(payload).encode()


def _signed(account, world, *, chain_id=None, ledger=None, nonce=0, from_time=None, to_time=None, entries=None):
    """A batch signed by ``account`` over exactly these fields (defaults: a valid batch)."""
    now = int(time.time())
    from_time = now - 60 if from_time is None else from_time
    to_time = now - 1 if to_time is None else to_time
    entries = playbatch.encode_entries({world.works[0]: 1}) if entries is None else entries
    digest = playbatch.batch_digest(
        world.w3.eth.chain_id if chain_id is None else chain_id,
        world.ledger_address if ledger is None else ledger,
        account.address,
        nonce,
        from_time,
        to_time,
        entries,
    )  # signed below without sign_batch's own checks, so that malformed content carries a real signature
    sig = account.unsafe_sign_hash(digest)
    return {
        "device": account.address,
        "nonce": nonce,
        "fromTime": from_time,
        "toTime": to_time,
        "entries": "0x" + entries.hex(),
        "signature": "0x" + playbatch.to_compact_signature(sig.r, sig.s, sig.v).hex(),
    }


def _with(payload: dict, **changes) -> dict:
    return {**payload, **changes}


def _raw_entries(*pairs: tuple[int, int]) -> bytes:
    """Entry bytes exactly as given (no sorting, no checks), to sign malformed content."""
    return b"".join(struct.pack(">IH", work, count) for work, count in pairs)


NOW = int(time.time())

CORPUS = [
    # --- not a batch at all
    Bad("truncated", lambda w, a, o: _json(signed_payload(a, w, 0, {w.works[0]: 1}))[:57], 400, "malformed_json"),
    Bad("empty", lambda w, a, o: b"", 400, "malformed_json"),
    Bad("not utf-8", lambda w, a, o: b"\xff\xfe\x00{", 400, "malformed_json"),
    Bad("nested 100k deep", lambda w, a, o: b"[" * 100_000 + b"]" * 100_000, 400, "malformed_json"),
    Bad("oversized", lambda w, a, o: b'{"pad": "' + b"x" * (300 * 1024) + b'"}', 413, "payload_too_large"),
    Bad("a list", lambda w, a, o: b"[1, 2, 3]", 422, "invalid_batch"),
    Bad("a number", lambda w, a, o: b"42", 422, "invalid_batch"),
    Bad("null", lambda w, a, o: b"null", 422, "invalid_batch"),
    # --- wrong types
    Bad("nonce as a string", lambda w, a, o: _json(_with(_signed(a, w), nonce="0")), 422, "invalid_batch"),
    Bad("nonce negative", lambda w, a, o: _json(_with(_signed(a, w), nonce=-1)), 422, "invalid_batch"),
    Bad("nonce as a float", lambda w, a, o: _json(_with(_signed(a, w), nonce=0.5)), 422, "invalid_batch"),
    Bad("nonce too wide", lambda w, a, o: _json(_with(_signed(a, w), nonce=2**32)), 422, "invalid_batch"),
    Bad("toTime as a string", lambda w, a, o: _json(_with(p := _signed(a, w), toTime=str(p["toTime"]))), 422, "invalid_batch"),
    Bad("device not an address", lambda w, a, o: _json(_with(_signed(a, w), device="0x1234")), 422, "invalid_batch"),
    Bad("signature missing", lambda w, a, o: _json({k: v for k, v in _signed(a, w).items() if k != "signature"}), 422, "invalid_batch"),
    Bad("signature short", lambda w, a, o: _json(_with(_signed(a, w), signature="0x" + "11" * 20)), 422, "invalid_batch"),
    Bad("entries an object", lambda w, a, o: _json(_with(_signed(a, w), entries={"1": 2})), 422, "invalid_batch"),
    Bad("entries odd hex", lambda w, a, o: _json(_with(_signed(a, w), entries="0x0000000100")), 422, "invalid_entries"),
    # --- signed, but not for this ledger
    Bad("another chain in the domain", lambda w, a, o: _json(_signed(a, w, chain_id=w.w3.eth.chain_id + 1)), 401, "bad_signature"),
    Bad("another contract in the domain", lambda w, a, o: _json(_signed(a, w, ledger=o.address)), 401, "bad_signature"),
    Bad("another device's signature", lambda w, a, o: _json(_with(_signed(o, w), device=a.address)), 401, "bad_signature"),
    # --- signed, with bad content
    Bad("reversed times", lambda w, a, o: _json(_signed(a, w, from_time=NOW - 10, to_time=NOW - 20)), 422, "bad_time_range"),
    Bad("zero times", lambda w, a, o: _json(_signed(a, w, from_time=0, to_time=0)), 422, "bad_time_range"),
    Bad("future times", lambda w, a, o: _json(_signed(a, w, from_time=NOW + 86_400, to_time=NOW + 86_460)), 422, "bad_time_range"),
    Bad("duplicate works", lambda w, a, o: _json(_signed(a, w, entries=_raw_entries((w.works[0], 1), (w.works[0], 1)))), 422, "invalid_entries"),
    Bad("works out of order", lambda w, a, o: _json(_signed(a, w, entries=_raw_entries((w.works[1], 1), (w.works[0], 1)))), 422, "invalid_entries"),
    Bad("zero count", lambda w, a, o: _json(_signed(a, w, entries=_raw_entries((w.works[0], 0)))), 422, "invalid_entries"),
    Bad("work id 0", lambda w, a, o: _json(_signed(a, w, entries=_raw_entries((0, 1)))), 422, "invalid_entries"),
    Bad("no entries", lambda w, a, o: _json(_signed(a, w, entries=b"")), 422, "invalid_entries"),
    Bad("count over 16 bits", lambda w, a, o: _json(_with(_signed(a, w), entries=[[w.works[0], 70_000]])), 422, "invalid_entries"),
    Bad("10,001 works", lambda w, a, o: _json(_with(_signed(a, w), entries=[[n, 1] for n in range(1, 10_002)])), 422, "too_many_entries"),
    Bad("unregistered work", lambda w, a, o: _json(_signed(a, w, entries=_raw_entries((w.admin.total_works() + 1, 1)))), 422, "unknown_work"),
]  # fmt: skip


def test_corpus_names_are_unique_and_every_status_is_a_4xx():
    assert len({bad.name for bad in CORPUS}) == len(CORPUS)
    assert all(400 <= bad.status < 500 for bad in CORPUS)


@pytest.fixture
def device(world):
    account = Account.create()
    world.licensee.register_device(account.address, "GB", world.licensee.device_proof(account))
    return account


def _check(answers: list[tuple[Bad, int, dict]]) -> None:
    wrong = []
    for bad, status, body in answers:
        error = body.get("error") if isinstance(body, dict) else None
        shape_ok = isinstance(error, dict) and set(error) == {"code", "message"} and bool(error["message"])
        if (status, error and error.get("code")) != (bad.status, bad.code) or not shape_ok:
            wrong.append(f"{bad.name}: got {status} {body!r:.200}, want {bad.status} {bad.code}")
    assert not wrong, "\n".join(wrong)


def test_every_bad_batch_over_http_gets_its_code_and_nothing_is_stored(world, engine, device):
    other = Account.create()
    server = HttpIngestServer(make_ctx(world, engine)).start()
    answers = []
    try:
        for bad in CORPUS:
            resp = requests.post(
                server.url,
                data=bad.build(world, device, other),
                headers={"Content-Type": "application/json"},
                timeout=20,
            )
            answers.append((bad, resp.status_code, resp.json()))
    finally:
        server.stop()
    _check(answers)
    assert stored_count(engine) == 0


class _DeviceLink:
    """One MQTT client standing in for a device: publishes on its topic, collects its acks."""

    def __init__(self, device: str):
        self.topic = f"{TOPIC_PREFIX}/{device.lower()}"
        self.acks: list[dict] = []
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"corpus-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: subscribed.set()
        self.client.connect(MQTT_HOST, MQTT_PORT)
        self.client.loop_start()
        self.client.subscribe(f"{self.topic}/ack", qos=1)
        assert subscribed.wait(5), "no SUBACK"

    def _on_message(self, client, userdata, msg) -> None:
        with self.cond:
            self.acks.append(json.loads(msg.payload))
            self.cond.notify_all()

    def roundtrip(self, body: bytes, timeout: float = 20.0) -> dict:
        """Publishes one message and waits for its ack (one at a time, so acks pair up in order)."""
        with self.cond:
            seen = len(self.acks)
        self.client.publish(self.topic, body, qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.acks) > seen, timeout), "no ack"
            return self.acks[seen]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_every_bad_batch_over_mqtt_gets_the_same_code_in_its_ack_and_nothing_is_stored(
    world, engine, device, mqtt_consumer_factory
):
    other = Account.create()
    mqtt_consumer_factory(engine)
    link = _DeviceLink(device.address)
    answers = []
    try:
        for bad in CORPUS:
            ack = link.roundtrip(bad.build(world, device, other))
            answers.append((bad, ack.get("status"), ack))
        good = link.roundtrip(_json(_signed(device, world, nonce=9)))  # the link still works afterwards
    finally:
        link.close()
    _check(answers)
    assert (good["status"], good["nonce"], good["state"]) == (202, 9, "pending")
    assert stored_count(engine) == 1
