"""MQTT ingest (``ledger ingest-mqtt``): play batches from devices over a broker.

A device publishes a batch (the same JSON body as ``POST /api/v1/batches``) on
``plays/<device address>`` with QoS 1 and subscribes to ``plays/<device address>/ack``. This
consumer subscribes to ``plays/+`` with QoS 1 in a persistent session (fixed client id,
``clean_session=False``), so the broker keeps messages that arrive while it is down. For each
message it runs :func:`ledger.ingest.ingest_batch` (which stores the batch durably before it
returns) and then publishes the answer with QoS 1 on the ack topic::

    {"status": 202, "nonce": 7, "batchId": 12, "state": "pending", "device": "0x…", "digest": "0x…", "plays": 1000}
    {"status": 409, "nonce": 7, "error": {"code": "nonce_conflict", "message": "…"}}

Messages are handled by ``workers`` threads at once, so that the batches arriving together are
stored by one group commit (:class:`ledger.ingest.GroupCommit`: one transaction and one fsync for
many). The PUBACKs are sent by hand (paho's ``manual_ack``), each only after its batch is stored
and its answer published, and in the order the messages arrived (as MQTT 3.1.1 asks): a consumer
killed in between gets the unacknowledged messages again and answers them idempotently. The
broker bounds how many unacknowledged messages it sends at once (Mosquitto's
``max_inflight_messages``, 20 by default), which bounds a group. Several consumers can share the
load with ``--shared-group NAME`` (``$share/NAME/plays/+``, MQTT 5 brokers such as Mosquitto 2).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from .config import DEFAULT_MQTT_TOPIC_PREFIX, DEFAULT_MQTT_URL
from .errors import ConfigError, IngestError
from .ingest import IngestContext, ingest_batch, parse_body

log = logging.getLogger(__name__)


def ack_topic(device: str, prefix: str = DEFAULT_MQTT_TOPIC_PREFIX) -> str:
    return f"{prefix}/{device.lower()}/ack"


def answer(raw: bytes, ctx: IngestContext, topic_device: str) -> dict[str, Any]:
    """The ack message for one published batch (never raises for bad input)."""
    nonce = None
    try:
        payload = parse_body(raw, ctx, what="message")
        if isinstance(payload, dict) and isinstance(payload.get("nonce"), int):
            nonce = payload["nonce"]
        result = ingest_batch(payload, ctx, source="mqtt", topic_device=topic_device)
        return {"status": result.status, "nonce": nonce, **result.body}
    except IngestError as exc:
        return {"status": exc.status, "nonce": nonce, **exc.to_json()}
    except Exception:  # noqa: BLE001 - a bug: say so, the device retries later
        log.exception("ingest-mqtt: unexpected error on a batch of %s", topic_device)
        return {
            "status": 500,
            "nonce": nonce,
            "error": {"code": "internal_error", "message": "the server failed; retry later"},
        }


class MqttIngest:
    """The consumer. ``start()`` connects and returns; ``stop()`` disconnects."""

    def __init__(
        self,
        ctx: IngestContext,
        url: str = DEFAULT_MQTT_URL,
        client_id: str = "ledger-ingest",
        shared_group: str | None = None,
        topic_prefix: str = DEFAULT_MQTT_TOPIC_PREFIX,
        workers: int = 16,
    ):
        self.ctx = ctx
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts", "tcp"):
            raise ConfigError(f"LEDGER_MQTT_URL must be mqtt:// or mqtts://, not {url!r}")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (8883 if parsed.scheme == "mqtts" else 1883)
        self.topic_prefix = topic_prefix
        topic = f"{topic_prefix}/+"
        self.subscription = f"$share/{shared_group}/{topic}" if shared_group else topic
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=True
        )
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ingest-mqtt")
        self._acks: collections.deque[list[Any]] = collections.deque()  # [mid, qos, done] in arrival order
        self._acks_lock = threading.Lock()
        if parsed.username:
            self.client.username_pw_set(parsed.username, parsed.password)
        if parsed.scheme == "mqtts":
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 30)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a, **k: self.subscribed.set()
        self.client.on_disconnect = self._on_disconnect
        self.handled = 0

    def _on_disconnect(self, *_args: Any, **_kw: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        with self._acks_lock:  # the broker sends the unacknowledged messages again on reconnect
            self._acks.clear()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
    ) -> None:
        if reason_code.is_failure:
            log.error("ingest-mqtt: broker refused the connection: %s", reason_code)
            return
        log.info("ingest-mqtt: connected to %s:%d, subscribing to %s", self.host, self.port, self.subscription)
        client.subscribe(self.subscription, qos=1)
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        slot = [msg.mid, msg.qos, False]
        with self._acks_lock:
            self._acks.append(slot)
        prefix, _, device = msg.topic.rpartition("/")
        if prefix != self.topic_prefix or not device:
            self._done(client, slot)
            return
        self._pool.submit(self._handle, client, bytes(msg.payload), device, slot)

    def _done(self, client: mqtt.Client, slot: list[Any]) -> None:
        """Marks a message handled and acknowledges every handled message at the head, in order."""
        with self._acks_lock:
            slot[2] = True
            while self._acks and self._acks[0][2]:
                mid, qos, _ = self._acks.popleft()
                client.ack(mid, qos)

    def _handle(self, client: mqtt.Client, payload: bytes, device: str, slot: list[Any]) -> None:
        try:
            self._reply(client, payload, device)
        finally:
            self._done(client, slot)

    def _reply(self, client: mqtt.Client, payload: bytes, device: str) -> None:
        reply = answer(payload, self.ctx, topic_device=device)
        log.debug(
            "ingest-mqtt: %s nonce %s -> %s %s",
            device,
            reply.get("nonce"),
            reply["status"],
            reply.get("error", {}).get("code", ""),
        )
        client.publish(ack_topic(device, self.topic_prefix), json.dumps(reply, separators=(",", ":")), qos=1)
        with self._acks_lock:
            self.handled += 1

    def start(self, wait: float = 10.0) -> None:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(wait):
            raise ConnectionError(f"could not subscribe at {self.host}:{self.port} within {wait:.0f} s")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run_forever(self) -> None:
        """Blocking loop with reconnects (the CLI)."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_forever(retry_first_connection=True)
