#!/usr/bin/env python3
"""The program a play-reporting device runs: it holds the device key, turns plays into signed
batches, keeps them in an on-disk spool and delivers them over HTTP or MQTT.

Standalone on purpose: it imports only eth-account, requests, paho-mqtt and the standard library,
so it runs on a small device without the rest of the project. The signed type and the entry
encoding are copied from ``ledger/playbatch.py`` (tests/device proves they match byte for byte):

    PlayBatch(address device,uint256 nonce,uint64 fromTime,uint64 toTime,bytes entries)
    domain: name "RoyaltyLedger", version "1", chainId, verifyingContract = the ledger contract
    entries: n records of work id (uint32 big-endian) + count (uint16), work ids increasing

Durability: the spool is SQLite with ``synchronous=FULL`` (WAL). A play is committed to it
before ``play`` returns; a batch is signed, given its nonce and written in the same transaction
that removes its plays; a batch leaves the spool only when the server acknowledges it. A
SIGKILL at any moment therefore loses nothing and resends what was not acknowledged (the
server answers a resent batch idempotently).

Usage (see docs/devices.md):
    device.py --state DIR keygen
    device.py --state DIR play --work 42 [--count 3]
    device.py --state DIR replay plays.csv          # CSV: timestamp,work_id
    device.py --state DIR run [--stdin] [--batch-size 1000] [--max-age 60]
    device.py --state DIR flush                     # batch and send everything, then exit
    device.py --state DIR status [--json]           # what waits and why, rejections, the server
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import struct
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

from eth_account import Account
from eth_account.messages import encode_typed_data

# ---------------------------------------------------------------------------------------------
# Format (a copy of ledger/playbatch.py, kept minimal)
# ---------------------------------------------------------------------------------------------
DOMAIN_NAME = "RoyaltyLedger"
DOMAIN_VERSION = "1"
MAX_ENTRIES = 1024
MAX_COUNT = 0xFFFF
MAX_WORK_ID = 0xFFFFFFFF
MAX_NONCE = 0xFFFFFFFF
PLAY_BATCH_TYPES = {
    "PlayBatch": [
        {"name": "device", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "fromTime", "type": "uint64"},
        {"name": "toTime", "type": "uint64"},
        {"name": "entries", "type": "bytes"},
    ]
}

EXIT_OK, EXIT_ERROR, EXIT_UNSENT = 0, 1, 3


class DeviceError(Exception):
    """A problem the user must fix (bad key file, bad provisioning, bad input)."""


def encode_entries(counts: dict[int, int]) -> bytes:
    """Packs {work id: count} into the signed entry bytes, sorted by work id."""
    items = sorted(counts.items())
    if not 1 <= len(items) <= MAX_ENTRIES:
        raise DeviceError(f"a batch holds 1 to {MAX_ENTRIES} works, not {len(items)}")
    out = bytearray()
    for work_id, count in items:
        if not 1 <= work_id <= MAX_WORK_ID:
            raise DeviceError(f"work id {work_id} is out of range")
        if not 1 <= count <= MAX_COUNT:
            raise DeviceError(f"count {count} of work {work_id} is not in 1..{MAX_COUNT}")
        out += struct.pack(">IH", work_id, count)
    return bytes(out)


def sign_batch(account, chain_id: int, ledger: str, nonce: int, from_time: int, to_time: int, entries: bytes) -> bytes:
    """The 64-byte EIP-2098 compact signature (r, yParity << 255 | s) of a batch."""
    if not 0 <= nonce <= MAX_NONCE:
        raise DeviceError(f"nonce {nonce} is out of range")
    if not 0 <= from_time <= to_time <= 0xFFFFFFFF:
        raise DeviceError("times must satisfy 0 <= fromTime <= toTime < 2**32")
    signable = encode_typed_data(
        domain_data={"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id, "verifyingContract": ledger},
        message_types=PLAY_BATCH_TYPES,
        message_data={
            "device": account.address,
            "nonce": nonce,
            "fromTime": from_time,
            "toTime": to_time,
            "entries": entries,
        },
    )
    sig = account.sign_message(signable)
    y_parity = sig.v - 27 if sig.v >= 27 else sig.v
    return sig.r.to_bytes(32, "big") + ((y_parity << 255) | sig.s).to_bytes(32, "big")


DEVICE_REGISTRATION_TYPES = {
    "DeviceRegistration": [
        {"name": "device", "type": "address"},
        {"name": "licensee", "type": "address"},
        {"name": "nonce", "type": "uint256"},
    ]
}


def _address(text: str, what: str) -> str:
    if not (
        isinstance(text, str)
        and len(text) == 42
        and text[:2] in ("0x", "0X")
        and all(c in "0123456789abcdefABCDEF" for c in text[2:])
    ):
        raise DeviceError(f"{what} {text!r} is not an address (0x + 40 hex digits)")
    return "0x" + text[2:].lower()


def registration_proof(account, chain_id: int, ledger: str, licensee: str, nonce: int = 0) -> bytes:
    """The 65-byte (r, s, v) EIP-712 signature by which this device key agrees to be registered by
    ``licensee`` on ``ledger`` (``nonce``: how often the key was registered before, usually 0)."""
    signable = encode_typed_data(
        domain_data={
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": _address(ledger, "ledger"),
        },
        message_types=DEVICE_REGISTRATION_TYPES,
        message_data={"device": account.address, "licensee": _address(licensee, "licensee"), "nonce": nonce},
    )
    sig = account.sign_message(signable)
    return sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.v])


def batch_payload(
    account, chain_id: int, ledger: str, nonce: int, from_time: int, to_time: int, counts: dict[int, int]
) -> dict:
    """The JSON body of POST /api/v1/batches (and of an MQTT message) for a batch."""
    entries = encode_entries(counts)
    signature = sign_batch(account, chain_id, ledger, nonce, from_time, to_time, entries)
    return {
        "device": account.address,
        "nonce": nonce,
        "fromTime": from_time,
        "toTime": to_time,
        "entries": "0x" + entries.hex(),
        "signature": "0x" + signature.hex(),
    }


# ---------------------------------------------------------------------------------------------
# Key and provisioning files
# ---------------------------------------------------------------------------------------------
def keygen(path: str, force: bool = False) -> str:
    """Creates a device key file (mode 0600) and returns the device address."""
    if os.path.exists(path) and not force:
        raise DeviceError(f"{path} exists; a device keeps its key (use --force to replace it)")
    account = Account.create()
    body = json.dumps({"address": account.address, "privateKey": "0x" + account.key.hex()})
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return account.address


def _read_json(path: str, what: str, hint: str):
    """A JSON file's content, or a DeviceError saying what is wrong with it."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DeviceError(f"no {what} at {path}; {hint}") from None
    except (OSError, ValueError) as exc:
        raise DeviceError(f"cannot read {what} {path}: {exc}") from None


def load_key(path: str):
    data = _read_json(path, "key file", "run `device.py keygen` first")
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        print(f"warning: key file {path} is readable by others (mode {mode:o}); chmod 600 it", file=sys.stderr)
    account = Account.from_key(data["privateKey"])
    if data.get("address") and data["address"].lower() != account.address.lower():
        raise DeviceError(f"key file {path} names {data['address']} but holds the key of {account.address}")
    return account


@dataclass(frozen=True)
class Provisioning:
    """What the portal hands a device: who it is, where to send, what to sign for."""

    device: str
    device_id: int
    licensee: str
    transport: str  # "http" | "mqtt"
    endpoint: str  # http(s)://host/api/v1/batches
    mqtt_url: str  # mqtt://host:1883 (mqtts:// for TLS)
    chain_id: int
    ledger: str
    topic_prefix: str = "plays"  # plays/<device> and plays/<device>/ack

    @classmethod
    def load(cls, path: str) -> Provisioning:
        data = _read_json(path, "provisioning file", "download it from the portal")
        try:
            prov = cls(
                device=data["device"],
                device_id=int(data.get("deviceId") or 0),
                licensee=data.get("licensee", ""),
                transport=data.get("transport", "http"),
                endpoint=data.get("endpoint", ""),
                mqtt_url=data.get("mqttUrl", ""),
                chain_id=int(data["chainId"]),
                ledger=data["ledger"],
                topic_prefix=str(data.get("mqttTopicPrefix") or "plays").strip("/"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DeviceError(f"provisioning file {path} lacks or mangles {exc}") from None
        if prov.transport not in ("http", "mqtt"):
            raise DeviceError(f"transport must be http or mqtt, not {prov.transport!r}")
        if prov.transport == "http" and not prov.endpoint:
            raise DeviceError("provisioning for http needs an endpoint")
        if prov.transport == "mqtt" and not prov.mqtt_url:
            raise DeviceError("provisioning for mqtt needs mqttUrl")
        return prov


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Spool
# ---------------------------------------------------------------------------------------------
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plays (id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL,
                                  work_id INTEGER NOT NULL, count INTEGER NOT NULL DEFAULT 1,
                                  added REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS batches (nonce INTEGER PRIMARY KEY, body TEXT NOT NULL,
                                    plays INTEGER NOT NULL, created REAL NOT NULL,
                                    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT);
CREATE TABLE IF NOT EXISTS rejected (nonce INTEGER PRIMARY KEY, body TEXT NOT NULL,
                                     plays INTEGER NOT NULL, status INTEGER, code TEXT,
                                     message TEXT, at REAL NOT NULL);
"""


class Spool:
    """The device's durable state: unbatched plays, signed unacknowledged batches, the nonce
    counter and replay progress. One SQLite file; every change is one fsynced transaction."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        db = self.db
        db.executescript(SCHEMA)

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _tx(self):
        return _Transaction(self.db)

    # -- plays -------------------------------------------------------------------------------
    def add_play(self, work_id: int, ts: int | None = None, count: int = 1) -> None:
        if not 1 <= work_id <= MAX_WORK_ID:
            raise DeviceError(f"work id {work_id} is out of range")
        if count < 1:
            raise DeviceError("count must be at least 1")
        with self._tx() as db:
            now = time.time()
            db.execute(
                "INSERT INTO plays (ts, work_id, count, added) VALUES (?, ?, ?, ?)",
                (int(ts if ts is not None else now), work_id, count, now),
            )

    def unbatched(self) -> tuple[int, float | None]:
        """(plays waiting, when the oldest was recorded, unix seconds)."""
        row = self.db.execute("SELECT COALESCE(SUM(count), 0), MIN(added) FROM plays").fetchone()
        return int(row[0]), row[1]

    def next_nonce(self, db) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'next_nonce'").fetchone()
        return int(row[0]) if row else 0

    def _put_batch(self, db, account, prov: Provisioning, plays: list[tuple[int, int, int]]) -> int:
        """Signs plays [(ts, work, count)] as one batch under the next nonce; same transaction."""
        nonce = self.next_nonce(db)
        if nonce > MAX_NONCE:
            raise DeviceError("this device key has used all 2**32 nonces; provision a new key")
        counts: dict[int, int] = {}
        for _, work, count in plays:
            counts[work] = counts.get(work, 0) + count
        from_time = min(p[0] for p in plays)
        to_time = max(p[0] for p in plays)
        body = batch_payload(account, prov.chain_id, prov.ledger, nonce, from_time, to_time, counts)
        total = sum(counts.values())
        db.execute(
            "INSERT INTO batches (nonce, body, plays, created) VALUES (?, ?, ?, ?)",
            (nonce, json.dumps(body, separators=(",", ":")), total, time.time()),
        )
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('next_nonce', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(nonce + 1),),
        )
        return nonce

    def seal(self, account, prov: Provisioning, batch_size: int, only_full: bool = False) -> int:
        """Turns unbatched plays into signed batches of at most batch_size plays; returns how many."""
        sealed = 0
        while True:
            with self._tx() as db:
                rows = db.execute(
                    "SELECT id, ts, work_id, count FROM plays ORDER BY id LIMIT ?", (batch_size,)
                ).fetchall()
                if not rows:
                    return sealed
                taken: list[int] = []
                plays: list[tuple[int, int, int]] = []
                counts: dict[int, int] = {}
                total = 0
                for pid, ts, work, count in rows:
                    if total + count > batch_size and taken:
                        break
                    if work not in counts and len(counts) == MAX_ENTRIES:
                        break
                    if counts.get(work, 0) + count > MAX_COUNT:
                        break
                    counts[work] = counts.get(work, 0) + count
                    total += count
                    taken.append(pid)
                    plays.append((ts, work, count))
                if not taken:  # a single row with a count above MAX_COUNT
                    raise DeviceError(f"play row {rows[0][0]} has count {rows[0][3]} > {MAX_COUNT}")
                full = total >= batch_size or len(taken) < len(rows)
                if only_full and not full:
                    return sealed
                self._put_batch(db, account, prov, plays)
                db.executemany("DELETE FROM plays WHERE id = ?", [(p,) for p in taken])
                sealed += 1

    # -- batches -----------------------------------------------------------------------------
    def put_batch(
        self,
        account,
        prov: Provisioning,
        plays: list[tuple[int, int, int]],
        progress_key: str | None = None,
        progress: str | None = None,
    ) -> int:
        """Stores a signed batch of plays that were never in the plays table (replay), with the
        replay progress marker in the same transaction."""
        with self._tx() as db:
            nonce = self._put_batch(db, account, prov, plays)
            if progress_key:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (progress_key, progress),
                )
            return nonce

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def pending_batches(self, limit: int = 1000, exclude: set[int] | None = None) -> list[tuple[int, str, int]]:
        rows = self.db.execute(
            "SELECT nonce, body, plays FROM batches ORDER BY nonce LIMIT ?", (limit + len(exclude or ()),)
        ).fetchall()
        return [r for r in rows if not exclude or r[0] not in exclude][:limit]

    def acknowledge(self, nonce: int, status: int = 0) -> None:
        """Removes an acknowledged batch; the last acknowledgement is kept for `status`."""
        with self._tx() as db:
            db.execute("DELETE FROM batches WHERE nonce = ?", (nonce,))
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('last_ack', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (json.dumps({"nonce": nonce, "status": status, "at": time.time()}),),
            )

    def failed_attempt(self, nonce: int, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET attempts = attempts + 1, last_error = ? WHERE nonce = ?", (error[:500], nonce)
            )

    def reject(self, nonce: int, status: int, code: str, message: str) -> None:
        """Moves a batch the server refused for good to the dead-letter table (kept for a human)."""
        with self._tx() as db:
            row = db.execute("SELECT body, plays FROM batches WHERE nonce = ?", (nonce,)).fetchone()
            if row is None:
                return
            db.execute(
                "INSERT OR REPLACE INTO rejected (nonce, body, plays, status, code, message, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (nonce, row[0], row[1], status, code, message[:500], time.time()),
            )
            db.execute("DELETE FROM batches WHERE nonce = ?", (nonce,))

    def counts(self) -> dict:
        db = self.db
        plays, oldest = self.unbatched()
        b = db.execute("SELECT COUNT(*), COALESCE(SUM(plays), 0) FROM batches").fetchone()
        r = db.execute("SELECT COUNT(*), COALESCE(SUM(plays), 0) FROM rejected").fetchone()
        return {
            "unbatchedPlays": plays,
            "oldestPlay": oldest,
            "spooledBatches": b[0],
            "spooledPlays": b[1],
            "rejectedBatches": r[0],
            "rejectedPlays": r[1],
            "nextNonce": self.next_nonce(db),
        }

    def details(self, limit: int = 20) -> dict:
        """What `status` explains: the counters, the last acknowledgement, the spooled batches'
        nonces and last errors, and the rejected batches with their codes."""
        db = self.db
        b = db.execute("SELECT MIN(nonce), MAX(nonce), MIN(created), MAX(attempts) FROM batches").fetchone()
        last_error = db.execute(
            "SELECT last_error FROM batches WHERE last_error IS NOT NULL ORDER BY nonce LIMIT 1"
        ).fetchone()
        rejected = [
            {"nonce": n, "plays": p, "status": st, "code": c or "", "message": m or "", "at": at}
            for n, p, st, c, m, at in db.execute(
                "SELECT nonce, plays, status, code, message, at FROM rejected ORDER BY nonce DESC LIMIT ?", (limit,)
            )
        ]
        raw = self.get_meta("last_ack")
        return {
            **self.counts(),
            "spooledNonces": [b[0], b[1]] if b[0] is not None else [],
            "oldestSpooled": b[2],
            "attempts": b[3] or 0,
            "lastError": last_error[0] if last_error else None,
            "lastAck": json.loads(raw) if raw else None,
            "rejected": rejected,
        }


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


# ---------------------------------------------------------------------------------------------
# Transports
# ---------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What became of one delivery attempt."""

    kind: str  # "ack" | "rejected" | "retry"
    status: int = 0
    code: str = ""
    message: str = ""


def classify(status: int, body: dict | None) -> Outcome:
    """Maps a server answer (HTTP status or the status in an MQTT ack) to what the spool does."""
    err = (body or {}).get("error") or {}
    code, message = str(err.get("code", "")), str(err.get("message", ""))
    if 200 <= status < 300:
        return Outcome("ack", status)
    if status in (408, 425, 429) or status >= 500 or status == 0:
        return Outcome("retry", status, code, message or f"status {status}")
    return Outcome("rejected", status, code, message or f"status {status}")


class HttpTransport:
    def __init__(self, prov: Provisioning, timeout: float = 10.0, workers: int = 4):
        import requests  # only needed for HTTP

        self.url = prov.endpoint
        self.timeout = timeout
        self.workers = workers
        self._requests = requests
        self._local = threading.local()

    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = self._requests.Session()
        return s

    def send(self, body: str) -> Outcome:
        try:
            resp = self._session().post(
                self.url, data=body, timeout=self.timeout, headers={"Content-Type": "application/json"}
            )
        except self._requests.RequestException as exc:
            return Outcome("retry", 0, "unreachable", str(exc).splitlines()[0][:200])
        try:
            data = resp.json()
        except ValueError:
            data = None
        return classify(resp.status_code, data if isinstance(data, dict) else None)

    def send_many(self, items: list[tuple[int, str]]) -> list[tuple[int, Outcome]]:
        if self.workers <= 1 or len(items) <= 1:
            return [(n, self.send(b)) for n, b in items]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(zip([n for n, _ in items], pool.map(lambda it: self.send(it[1]), items), strict=True))

    def close(self) -> None:
        pass


class MqttTransport:
    """Publishes batches on <prefix>/<device> (QoS 1; prefix ``plays`` unless the provisioning says
    otherwise) and waits for the server's answer on <prefix>/<device>/ack, matched by nonce."""

    def __init__(self, prov: Provisioning, timeout: float = 15.0, window: int = 64):
        import paho.mqtt.client as mqtt

        url = urlparse(prov.mqtt_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.topic = f"{prov.topic_prefix}/{prov.device.lower()}"
        self.ack_topic = f"{self.topic}/ack"
        self.timeout = timeout
        self.window = window
        self._acks: dict[int, tuple[int, dict]] = {}
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"device-{prov.device.lower()}-{uuid.uuid4().hex[:8]}",
            clean_session=True,
        )
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        if url.scheme == "mqtts":
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda *a, **k: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 10)
        self._started = False

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if not reason_code.is_failure:
            client.subscribe(self.ack_topic, qos=1)
            self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self._connected.clear()
        self._subscribed.clear()

    def _on_message(self, client, userdata, msg):
        try:
            data = json.loads(msg.payload)
            nonce = int(data["nonce"])
            status = int(data["status"])
        except (ValueError, KeyError, TypeError):
            return
        with self._cond:
            self._acks[nonce] = (status, data)
            self._cond.notify_all()

    def _ensure(self) -> bool:
        if not self._started:
            try:
                self.client.connect(self.host, self.port, keepalive=30)
            except OSError:
                return False
            self.client.loop_start()
            self._started = True
        return self._connected.wait(5) and self._subscribed.wait(5)

    def send_many(self, items: list[tuple[int, str]]) -> list[tuple[int, Outcome]]:
        if not self._ensure():
            return [
                (n, Outcome("retry", 0, "unreachable", f"broker {self.host}:{self.port} unreachable")) for n, _ in items
            ]
        results: list[tuple[int, Outcome]] = []
        for start in range(0, len(items), self.window):
            chunk = items[start : start + self.window]
            with self._cond:
                for n, _ in chunk:
                    self._acks.pop(n, None)
            for _n, body in chunk:
                self.client.publish(self.topic, body, qos=1)
            deadline = time.monotonic() + self.timeout
            with self._cond:
                while not all(n in self._acks for n, _ in chunk):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                for n, _ in chunk:
                    if n in self._acks:
                        status, data = self._acks.pop(n)
                        results.append((n, classify(status, data)))
                    else:
                        results.append((n, Outcome("retry", 0, "timeout", "no ack from the server")))
            if any(o.kind == "retry" for _, o in results[-len(chunk) :]):
                results += [
                    (n, Outcome("retry", 0, "skipped", "earlier batch unacknowledged"))
                    for n, _ in items[start + self.window :]
                ]
                break
        return results

    def send(self, body: str) -> Outcome:
        nonce = json.loads(body)["nonce"]
        return self.send_many([(nonce, body)])[0][1]

    def close(self) -> None:
        if self._started:
            self.client.loop_stop()
            self.client.disconnect()


def make_transport(prov: Provisioning, workers: int = 4, timeout: float = 15.0):
    if prov.transport == "mqtt":
        return MqttTransport(prov, timeout=timeout)
    return HttpTransport(prov, timeout=timeout, workers=workers)


# ---------------------------------------------------------------------------------------------
# The device
# ---------------------------------------------------------------------------------------------
class Device:
    def __init__(
        self,
        state_dir: str,
        provisioning: str | None = None,
        key: str | None = None,
        workers: int = 4,
        quiet: bool = False,
        timeout: float = 15.0,
    ):
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.state_dir = state_dir
        self.key_path = key or os.path.join(state_dir, "key.json")
        self.prov_path = provisioning or os.path.join(state_dir, "provisioning.json")
        self.spool = Spool(os.path.join(state_dir, "spool.sqlite3"))
        self.workers = workers
        self.timeout = timeout
        self.quiet = quiet
        self._account = None
        self._prov: Provisioning | None = None
        self._transport = None

    @property
    def account(self):
        if self._account is None:
            self._account = load_key(self.key_path)
        return self._account

    @property
    def prov(self) -> Provisioning:
        if self._prov is None:
            prov = Provisioning.load(self.prov_path)
            if prov.device.lower() != self.account.address.lower():
                raise DeviceError(f"provisioning is for {prov.device}, but this key is {self.account.address}")
            self._prov = prov
        return self._prov

    @property
    def transport(self):
        if self._transport is None:
            self._transport = make_transport(self.prov, self.workers, self.timeout)
        return self._transport

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def deliver(self, limit: int = 256) -> tuple[int, int, int]:
        """Sends spooled batches, oldest first; returns (acknowledged, rejected, left to retry)."""
        acked = rejected = 0
        retry: set[int] = set()
        while True:
            rows = self.spool.pending_batches(limit, exclude=retry)
            if not rows:
                break
            plays = {n: p for n, _, p in rows}
            for nonce, outcome in self.transport.send_many([(n, b) for n, b, _ in rows]):
                if outcome.kind == "ack":
                    self.spool.acknowledge(nonce, outcome.status)
                    acked += 1
                    self.on_acked(plays[nonce])
                elif outcome.kind == "rejected":
                    self.spool.reject(nonce, outcome.status, outcome.code, outcome.message)
                    rejected += 1
                    self.log(
                        f"batch {nonce} rejected by the server: {outcome.status} {outcome.code} "
                        f"{outcome.message} (kept in the spool's rejected table)"
                    )
                else:
                    self.spool.failed_attempt(nonce, f"{outcome.code}: {outcome.message}")
                    retry.add(nonce)
            if retry:  # the server or the network is down: stop hammering, try again later
                break
        return acked, rejected, len(retry)

    def on_acked(self, plays: int) -> None:
        pass

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


# ---------------------------------------------------------------------------------------------
# Progress bar (stdlib only)
# ---------------------------------------------------------------------------------------------
class Progress:
    def __init__(self, total: int, label: str, enabled: bool | str = True):
        self.total, self.label = total, label
        self.enabled = enabled == "force" or (enabled is True and sys.stderr.isatty())
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.2 or self.done >= self.total):
            self._last = now
            frac = self.done / self.total if self.total else 1
            bar = "#" * int(frac * 30)
            rate = self.done / max(now - self.start, 1e-9)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {rate:,.0f}/s ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def parse_timestamp(text: str) -> int:
    text = text.strip()
    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise DeviceError(f"bad timestamp {text!r} (unix seconds or ISO 8601)") from None


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
def cmd_keygen(args) -> int:
    os.makedirs(args.state, mode=0o700, exist_ok=True)
    path = args.key or os.path.join(args.state, "key.json")
    print(keygen(path, force=args.force))
    return EXIT_OK


def cmd_register_proof(args) -> int:
    """Prints the proof of possession the licensee pastes into the portal (or passes to
    ``LedgerClient.register_device``). Ledger and chain come from the provisioning file unless given."""
    account = load_key(args.key or os.path.join(args.state, "key.json"))
    ledger, chain_id = args.ledger, args.chain_id
    if ledger is None or chain_id is None:
        prov = Provisioning.load(args.provisioning or os.path.join(args.state, "provisioning.json"))
        ledger = ledger or prov.ledger
        chain_id = chain_id if chain_id is not None else prov.chain_id
    try:
        proof = registration_proof(account, chain_id, ledger, args.licensee, args.nonce)
    except ValueError as exc:
        raise DeviceError(f"cannot sign the registration: {exc}") from None
    if args.json:
        print(
            json.dumps(
                {
                    "device": account.address,
                    "licensee": _address(args.licensee, "licensee"),
                    "ledger": _address(ledger, "ledger"),
                    "chainId": chain_id,
                    "nonce": args.nonce,
                    "signature": "0x" + proof.hex(),
                }
            )
        )
    else:
        print("0x" + proof.hex())
    return EXIT_OK


def cmd_play(args) -> int:
    dev = Device(args.state, args.provisioning, args.key, timeout=args.timeout)
    dev.spool.add_play(args.work, args.at, args.count)
    if args.send:
        dev.spool.seal(dev.account, dev.prov, args.batch_size, only_full=True)
        dev.deliver()
        dev.close()
    return EXIT_OK


def cmd_replay(args) -> int:
    """Reads CSV plays (timestamp,work_id), signs batches of --batch-size and delivers them as
    fast as the server takes them. Resumable: the file offset is stored with each batch."""
    dev = Device(args.state, args.provisioning, args.key, workers=args.workers, quiet=args.quiet, timeout=args.timeout)
    account, prov = dev.account, dev.prov
    path = os.path.abspath(args.file)
    progress_key = f"replay:{path}"
    offset = 0 if args.restart else int(dev.spool.get_meta(progress_key) or 0)
    if offset > os.path.getsize(path):
        raise DeviceError(
            f"{path} is shorter than the {offset} bytes already replayed; use --restart if it is a new log"
        )
    total_plays = _count_lines(path, offset)
    bar = Progress(total_plays, "replay", enabled="force" if args.progress else not args.quiet)
    delivered = {"plays": 0}

    def acked(plays: int) -> None:
        delivered["plays"] += plays
        bar.update(plays)

    dev.on_acked = acked  # type: ignore[method-assign]  # replay counts acknowledged plays
    sender_stop = threading.Event()
    sender_error: list[BaseException] = []

    def sender() -> None:  # delivers while the reader keeps signing
        try:
            while not sender_stop.is_set():
                _, _, left = dev.deliver()
                if left:
                    sender_stop.wait(1.0)
                elif not dev.spool.pending_batches(1):
                    sender_stop.wait(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            sender_error.append(exc)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    started = time.monotonic()
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            plays: list[tuple[int, int, int]] = []
            counts: dict[int, int] = {}
            while True:
                line = fh.readline()
                if line:
                    text = line.decode().strip()
                    if text and not text.lower().startswith("timestamp"):
                        ts_text, _, work_text = text.partition(",")
                        try:
                            work = int(work_text)
                        except ValueError:
                            raise DeviceError(f"bad line in {path}: {text!r}") from None
                        if work not in counts and len(counts) == MAX_ENTRIES or counts.get(work, 0) == MAX_COUNT:
                            dev.spool.put_batch(account, prov, plays, progress_key, str(fh.tell() - len(line)))
                            plays, counts = [], {}
                        plays.append((parse_timestamp(ts_text), work, 1))
                        counts[work] = counts.get(work, 0) + 1
                if plays and (len(plays) >= args.batch_size or not line):
                    dev.spool.put_batch(account, prov, plays, progress_key, str(fh.tell()))
                    plays, counts = [], {}
                if not line:
                    break
        # wait for the sender to drain the spool
        while dev.spool.pending_batches(1) and not sender_error:
            if args.no_wait:
                break
            time.sleep(0.05)
        sender_stop.set()
        t.join()
        if args.no_wait and not sender_error:
            dev.deliver()  # one last attempt at what is spooled, then leave the rest for `run`/`flush`
    finally:
        sender_stop.set()
        t.join()
        bar.close()
        dev.close()
    if sender_error:
        raise sender_error[0]
    elapsed = time.monotonic() - started
    c = dev.spool.counts()
    dev.log(
        f"replayed {total_plays} plays, {delivered['plays']} acknowledged in {elapsed:.2f} s "
        f"({delivered['plays'] / max(elapsed, 1e-9):,.0f} plays/s); "
        f"{c['spooledBatches']} batches still spooled, {c['rejectedBatches']} rejected"
    )
    return EXIT_OK if not c["spooledBatches"] else EXIT_UNSENT


def _count_lines(path: str, offset: int) -> int:
    n = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        for line in fh:
            s = line.strip()
            if s and not s.lower().startswith(b"timestamp"):
                n += 1
    return n


def cmd_flush(args) -> int:
    dev = Device(args.state, args.provisioning, args.key, workers=args.workers, quiet=args.quiet, timeout=args.timeout)
    try:
        dev.spool.seal(dev.account, dev.prov, args.batch_size)
        acked, rejected, left = dev.deliver()
    finally:
        dev.close()
    c = dev.spool.counts()
    dev.log(f"acknowledged {acked}, rejected {rejected}, {c['spooledBatches']} batches still spooled")
    return EXIT_OK if not c["spooledBatches"] else EXIT_UNSENT


#: What a licensee or installer does about each refusal code of the server (docs/devices.md, Errors).
REJECTION_ADVICE = {
    "unknown_device": "the ledger does not know this key: the licensee registers it in the portal with the proof "
    "from `register-proof`; check chainId and ledger in provisioning.json",
    "device_revoked": "the licensee revoked this device: register the key again (`register-proof --nonce N`) and "
    "download a new provisioning file",
    "bad_signature": "the signature does not match this key for the provisioning's chain and ledger: download the "
    "provisioning file again from the portal",
    "unknown_work": "a work id nobody registered: check the work ids the player reports",
    "nonce_used": "the ledger has used this batch number (a spool restored from an old copy?): these plays cannot "
    "be sent again under it",
    "nonce_conflict": "the server holds another batch under this number (a spool restored from an old copy?)",
    "bad_time_range": "the plays are dated in the future: check the device's clock",
    "topic_mismatch": "the MQTT topic is not this device's: check mqttTopicPrefix in provisioning.json",
}
GENERIC_REJECTION = "the server refused it for good: update device.py, or ask the operator"


def _when(ts: float | None) -> str:
    if not ts:
        return "never"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_report(dev: Device, limit: int = 20) -> tuple[dict, list[str]]:
    """(the status as JSON, the same in lines a person reads): who the device is, the server it
    talks to, what is waiting and why, what was rejected and what to do about it."""
    d = dev.spool.details(limit)
    lines: list[str] = []
    try:
        address = dev.account.address
    except DeviceError as exc:
        address = None
        lines.append(f"Key: {exc}")
    d["device"] = address
    try:
        prov = dev.prov
    except DeviceError as exc:
        prov = None
        lines.append(f"Provisioning: {exc}")
    if address:
        lines.append(f"Device {address}")
    if prov is not None:
        server = (
            prov.endpoint
            if prov.transport == "http"
            else f"{prov.mqtt_url} (topic {prov.topic_prefix}/{prov.device.lower()})"
        )
        d["server"] = {"transport": prov.transport, "url": server, "chainId": prov.chain_id, "ledger": prov.ledger}
        lines.append(f"Server: {prov.transport} {server}")
        lines.append(
            f"Ledger {prov.ledger} on chain {prov.chain_id}, device id {prov.device_id or '?'}, "
            f"licensee {prov.licensee or '?'}"
        )
    ack = d["lastAck"]
    lines.append(
        f"Last acknowledged: batch #{ack['nonce']} at {_when(ack['at'])}" if ack else "Last acknowledged: none yet"
    )
    waiting = []
    if d["unbatchedPlays"]:
        waiting.append(
            f"{d['unbatchedPlays']:,} plays not sealed into a batch yet (oldest recorded {_when(d['oldestPlay'])}): "
            "`run` seals them when --batch-size plays wait or after --max-age seconds; `flush` seals and sends now"
        )
    if d["spooledBatches"]:
        first, last = d["spooledNonces"]
        why = (
            f"the last attempt failed ({d['attempts']} attempt(s)): {d['lastError']}; `run` keeps retrying, "
            "`flush` tries once"
            if d["lastError"]
            else "not sent yet: `run` or `flush` sends them"
        )
        waiting.append(
            f"{d['spooledBatches']:,} signed batch(es) ({d['spooledPlays']:,} plays, #{first}..#{last}) "
            f"waiting to be sent since {_when(d['oldestSpooled'])}: {why}"
        )
    lines.append("Waiting:" if waiting else "Waiting: nothing; every play was acknowledged by the server")
    lines += [f"  - {w}" for w in waiting]
    if d["rejected"]:
        lines.append(
            f"Rejected (never retried: {d['rejectedBatches']:,} batch(es), {d['rejectedPlays']:,} plays; "
            "kept in the spool's rejected table):"
        )
        for r in d["rejected"]:
            lines.append(
                f"  - batch #{r['nonce']} ({r['plays']:,} plays) at {_when(r['at'])}: "
                f"{r['status']} {r['code']}: {r['message']}"
            )
            lines.append(f"    what to do: {REJECTION_ADVICE.get(r['code'], GENERIC_REJECTION)}")
    return d, lines


def cmd_status(args) -> int:
    dev = Device(args.state, args.provisioning, args.key)
    report, lines = status_report(dev)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(lines))
    return EXIT_OK


def cmd_run(args) -> int:
    """The daemon: records plays from stdin (a work id, or timestamp,work_id per line) or from
    `play` invocations, seals a batch when --batch-size plays wait or the oldest waited
    --max-age seconds, and delivers with backoff while the server is unreachable."""
    dev = Device(args.state, args.provisioning, args.key, workers=args.workers, quiet=args.quiet, timeout=args.timeout)
    account, prov = dev.account, dev.prov
    stop = threading.Event()
    if args.stdin:

        def reader() -> None:
            for line in sys.stdin:
                text = line.strip()
                if not text:
                    continue
                ts_text, sep, work_text = text.rpartition(",")
                try:
                    dev.spool.add_play(int(work_text), parse_timestamp(ts_text) if sep else None)
                except (ValueError, DeviceError) as exc:
                    dev.log(f"ignored input line {text!r}: {exc}")
            if args.exit_on_eof:
                stop.set()

        threading.Thread(target=reader, daemon=True).start()

    backoff = 0.0
    next_try = 0.0
    try:
        while True:
            waiting, oldest = dev.spool.unbatched()
            if waiting >= args.batch_size:
                dev.spool.seal(account, prov, args.batch_size, only_full=True)
            if oldest is not None and (time.time() - oldest >= args.max_age or stop.is_set()):
                dev.spool.seal(account, prov, args.batch_size)
            if time.monotonic() >= next_try:
                acked, rejected, left = dev.deliver()
                if left:
                    backoff = min(max(backoff * 2, 1.0), args.max_backoff)
                    next_try = time.monotonic() + backoff
                    dev.log(f"server unreachable; {left} batches wait, retrying in {backoff:.0f} s")
                else:
                    backoff = 0.0
            if stop.is_set() and not dev.spool.unbatched()[0] and not dev.spool.pending_batches(1):
                return EXIT_OK
            time.sleep(args.poll)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        dev.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="device.py", description="Report plays to the royalty ledger.")
    p.add_argument(
        "--state",
        default=os.environ.get("DEVICE_STATE_DIR", os.path.expanduser("~/.royalty-device")),
        help="state directory (key.json, provisioning.json, spool.sqlite3)",
    )
    p.add_argument("--key", help="key file (default STATE/key.json)")
    p.add_argument("--provisioning", help="provisioning file (default STATE/provisioning.json)")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="seconds to wait for the server's answer to a batch (HTTP response or MQTT ack)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("keygen", help="create the device key (file mode 0600)")
    s.add_argument("--force", action="store_true", help="replace an existing key (the old one is lost)")
    s.set_defaults(func=cmd_keygen)

    s = sub.add_parser("register-proof", help="print the key's proof of possession for the licensee's registration")
    s.add_argument("--licensee", required=True, help="address of the licensee who will register this device")
    s.add_argument("--ledger", help="RoyaltyLedger address (default: from the provisioning file)")
    s.add_argument("--chain-id", type=int, help="chain id (default: from the provisioning file)")
    s.add_argument(
        "--nonce",
        type=int,
        default=0,
        help="times this key was registered before (the contract's deviceRegistrationNonce)",
    )
    s.add_argument("--json", action="store_true", help="print device, licensee, ledger, chain and signature as JSON")
    s.set_defaults(func=cmd_register_proof)

    s = sub.add_parser("play", help="record a play")
    s.add_argument("--work", type=int, required=True)
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--at", type=int, help="unix time of the play (default now)")
    s.add_argument("--send", action="store_true", help="also seal full batches and send the spool")
    s.add_argument("--batch-size", type=int, default=1000)
    s.set_defaults(func=cmd_play)

    s = sub.add_parser("replay", help="report a CSV log of plays (timestamp,work_id) as fast as possible")
    s.add_argument("file")
    s.add_argument("--batch-size", type=int, default=1000)
    s.add_argument("--workers", type=int, default=4, help="concurrent HTTP requests")
    s.add_argument("--progress", action="store_true", help="show the progress bar even when not a tty")
    s.add_argument(
        "--no-wait",
        action="store_true",
        help="after one delivery attempt, exit even if batches are still spooled (else retry until the spool is empty)",
    )
    s.add_argument(
        "--restart", action="store_true", help="replay from the start even if this path was (partly) replayed before"
    )
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("run", help="run as a daemon: batch by size or age and deliver")
    s.add_argument("--batch-size", type=int, default=1000)
    s.add_argument("--max-age", type=float, default=60.0, help="seconds before a partial batch is sent")
    s.add_argument("--stdin", action="store_true", help="read plays from stdin (work_id or timestamp,work_id)")
    s.add_argument("--exit-on-eof", action="store_true", help="with --stdin: flush everything and exit at EOF")
    s.add_argument("--workers", type=int, default=4)
    s.add_argument("--poll", type=float, default=0.2)
    s.add_argument("--max-backoff", type=float, default=30.0)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("flush", help="seal all waiting plays and deliver the spool once")
    s.add_argument("--batch-size", type=int, default=1000)
    s.add_argument("--workers", type=int, default=4)
    s.set_defaults(func=cmd_flush)

    s = sub.add_parser("status", help="say what is waiting and why, what was rejected, the server and the last ack")
    s.add_argument("--json", action="store_true", help="the same as JSON (the spool's counters and details)")
    s.set_defaults(func=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_ERROR
    try:
        return args.func(args)
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
