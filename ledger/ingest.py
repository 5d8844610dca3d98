"""Ingest of signed play batches from devices: validate, verify, store as ``pending``, answer.

Framework-free: the portal's ``POST /api/v1/batches`` route and the MQTT consumer
(:mod:`ledger.mqtt`) both call :func:`handle_json` (raw bytes in, ``(status, body)`` out) or
:func:`ingest_batch` (a parsed dict in, :class:`IngestResult` out or an :class:`IngestError`).

Wire format (JSON object; see docs/devices.md)::

    {"device": "0x…", "nonce": 7, "fromTime": 1764000000, "toTime": 1764000060,
     "entries": "0x<6 bytes per entry>" | [[workId, count], …],
     "signature": "0x<64-byte EIP-2098 compact signature, or 65-byte r|s|v>"}

Checks, in order, each failing with its own error code (``{"error": {"code", "message"}}``):
size and JSON; shape and limits (1..1024 entries, work ids strictly increasing in 1..2**32-1,
counts 1..65535, nonce < 2**32, fromTime <= toTime <= now + the contract's clock skew); the
signature recovers to ``device`` under the contract's rules (r in 1..n-1, s in 1..n/2: a high-s
twin of a valid signature is a ``bad_signature``, as the contract would skip it); a stored batch
with the same (device, nonce) (same digest: the same answer again, stored once; another digest:
409 ``nonce_conflict``); the device is registered and not revoked on chain; the nonce is unused
on chain; the device has fewer than ``max_unsettled`` batches stored and not settled (429
``device_backlog_full``: nothing stored, the device keeps the batch and retries later). Then the
batch is committed as ``pending`` and only then answered 202. A failure of
the database or the node is a 503 ``unavailable`` (the device keeps the batch and retries),
never a stored bad batch.

How it stays cheap (the answers are those of the order above): the digest is hashed directly
and the signer recovered with libsecp256k1 (:mod:`ledger.playbatch`); devices and used nonces
come from a :class:`ledger.devicebook.DeviceBook` that follows the ledger's events (no call to
the node per batch, however rarely a device sends; a key's nonce word is read once, then kept
current from ``PlaysRecorded``); a new batch then costs its share of one INSERT and COMMIT:
batches that arrive together (the threads of a server, the MQTT consumer's workers) are stored
by :class:`GroupCommit` in one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` and one
COMMIT (one fsync or WAL flush for the lot), and each caller is answered only after that commit
returned. The store
is read only when the insert collides with the unique (device, nonce) (a resend or a conflict),
or when the chain refuses the batch or the node is down (a stored batch is answered as stored,
whatever the chain says now). A stale view can only let in a batch the relayer will see skipped
(a nonce used, or the device revoked, in the last second or so); it never refuses a valid batch.
"""

from __future__ import annotations

import functools
import json
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from eth_utils import is_hex_address, to_checksum_address
from sqlalchemy import Engine, Table, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.contract import Contract

from . import nonces as nonces_mod
from . import playbatch
from .chain import Deployment
from .devicebook import DeviceBook, DeviceRecord
from .errors import ChainUnavailableError, IngestError
from .nonces import JsonRpc, JsonRpcWordReader, NonceWords, nonce_bitmap_selector
from .pending import PENDING, PendingBatch
from .pending import utcnow as pending_now

log = logging.getLogger(__name__)
_PENDING_TABLE = cast(Table, PendingBatch.__table__)

MAX_BODY_BYTES = 256 * 1024  # 1,024 entries as JSON pairs take ~20 KiB; this leaves room
UINT32_MAX = 0xFFFFFFFF
DEFAULT_MAX_SKEW = 300

# ----------------------------------------------------------------------------- errors

# IngestError (ledger.errors) carries the stable ``code`` clients match on and the HTTP status.


class PayloadTooLarge(IngestError):
    code, status = "payload_too_large", 413


class MalformedJson(IngestError):
    code, status = "malformed_json", 400


class InvalidBatch(IngestError):
    """A field is missing or of the wrong type or range."""

    code, status = "invalid_batch", 422


class TooManyEntries(IngestError):
    code, status = "too_many_entries", 422


class InvalidEntries(IngestError):
    """Entries empty, not 6-byte records, work ids not strictly increasing, counts out of range."""

    code, status = "invalid_entries", 422


class BadTimeRange(IngestError):
    code, status = "bad_time_range", 422


class BadSignature(IngestError):
    code, status = "bad_signature", 401


class TopicMismatch(IngestError):
    """MQTT only: the batch's device is not the device of the topic it came on."""

    code, status = "topic_mismatch", 403


class UnknownWork(IngestError):
    """The batch names a work id nobody registered: its plays could earn nobody anything, so the
    relayer would spend gas for nothing (and the index would only record an anomaly)."""

    code, status = "unknown_work", 422


class UnknownDevice(IngestError):
    code, status = "unknown_device", 403


class DeviceRevoked(IngestError):
    code, status = "device_revoked", 403


class NonceUsed(IngestError):
    """The chain has used this nonce of the device key (each is usable once, in any order)."""

    code, status = "nonce_used", 409


class NonceConflict(IngestError):
    """Another batch of this device with this nonce is stored already."""

    code, status = "nonce_conflict", 409


class DeviceBacklogFull(IngestError):
    """The device has as many batches stored and not yet settled on chain as it may; retry later
    (the device keeps the batch: nothing was stored)."""

    code, status = "device_backlog_full", 429


class Unavailable(IngestError):
    """The database or the node cannot be reached; retry later (the device keeps the batch)."""

    code, status = "unavailable", 503


ERROR_CLASSES = (
    PayloadTooLarge,
    MalformedJson,
    InvalidBatch,
    TooManyEntries,
    InvalidEntries,
    UnknownWork,
    BadTimeRange,
    BadSignature,
    TopicMismatch,
    UnknownDevice,
    DeviceRevoked,
    NonceUsed,
    NonceConflict,
    DeviceBacklogFull,
    Unavailable,
)


# ----------------------------------------------------------------------------- per-device backlog


#: Unsettled (pending or inflight) stored batches a device may have (``LEDGER_DEVICE_BACKLOG``).
DEFAULT_DEVICE_BACKLOG = 1_000


class DeviceBacklog:
    """Bounds the unsettled batches (``pending`` or ``inflight``) stored per device.

    The count of a device is read from the store (one indexed COUNT over ``status, licensee_index,
    device_number``) at most every ``ttl`` seconds; in between, this process adds its own inserts,
    and a batch being stored holds a reservation from its check to its commit, so concurrent
    requests of one device cannot pass the limit together. A device that looks full on a cached
    count is counted afresh before it is refused (batches settle on chain meanwhile): a refusal
    costs one COUNT, an accepted batch none within ``ttl``.
    Several ingest processes each check their own view: together they may pass the limit by the
    batches the others stored in the last ``ttl`` seconds; it bounds growth, it is not a quota.
    """

    def __init__(
        self, sessions: sessionmaker[Session], limit: int, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sessions = sessions
        self.limit = limit
        self.ttl = ttl
        self.clock = clock
        self._counts: dict[tuple[int, int], tuple[float, int]] = {}  # device -> (read at, stored count)
        self._reserved: dict[tuple[int, int], int] = {}  # device -> batches between check and commit
        self._lock = threading.Lock()

    def _read(self, key: tuple[int, int]) -> None:
        from sqlalchemy import func

        from .pending import INFLIGHT

        with self.sessions() as session:
            n = session.scalar(
                select(func.count())
                .select_from(PendingBatch)
                .where(
                    PendingBatch.status.in_((PENDING, INFLIGHT)),
                    PendingBatch.licensee_index == key[0],
                    PendingBatch.device_number == key[1],
                )
            )
        with self._lock:
            self._counts[key] = (self.clock(), int(n or 0))

    def _try_reserve(self, key: tuple[int, int]) -> tuple[bool, int]:
        """(reserved, count) under the lock."""
        with self._lock:
            count = self._counts[key][1] + self._reserved.get(key, 0)
            if count < self.limit:
                self._reserved[key] = self._reserved.get(key, 0) + 1
                return True, count
            return False, count

    def admit(self, key: tuple[int, int], device: str) -> None:
        """Reserves a place for one batch of the device (release it with :meth:`done`), or raises
        :class:`DeviceBacklogFull` when its unsettled batches are at the limit."""
        with self._lock:
            cached = self._counts.get(key)
        read = cached is None or self.clock() - cached[0] > self.ttl
        if read:
            self._read(key)
        reserved, count = self._try_reserve(key)
        if not reserved and not read:  # never refuse on a cached count: batches settle meanwhile
            self._read(key)
            reserved, count = self._try_reserve(key)
        if not reserved:
            raise DeviceBacklogFull(
                f"device {device} has {count} batches stored and not yet settled on chain (at most "
                f"{self.limit}); keep this one and send it again later"
            )

    def done(self, key: tuple[int, int], stored: bool) -> None:
        """Releases the reservation of :meth:`admit`; ``stored``: the batch was stored (counted from now on)."""
        with self._lock:
            self._reserved[key] = self._reserved.get(key, 1) - 1
            if stored and key in self._counts:
                read_at, count = self._counts[key]
                self._counts[key] = (read_at, count + 1)


# ----------------------------------------------------------------------------- chain view


class ChainDevices:
    """Reads devices and nonces from the ledger contract.

    Made by :meth:`for_deployment` with a node reached over HTTP (the production path), it
    answers from a :class:`ledger.devicebook.DeviceBook`: every registration and the nonces
    applied, followed from the ledger's events about once a second, so a batch costs no call to
    the node, however rarely its device sends (see that module for why a stale view is safe).

    Without one (a contract object only, a node not reached over HTTP, or ``follow=False``), each
    lookup reads the contract, cached: a key's device id is re-read after ``ttl`` seconds (a
    revoked key may be registered again under a new id), "not registered" after
    ``negative_ttl``; a revocation is final for its id,
    so a revoked record is cached for good, an active one for ``ttl``. Nonce bitmap words are
    kept ``nonce_ttl`` seconds by :class:`ledger.nonces.NonceWords` (read by a raw JSON-RPC
    ``eth_call`` when the node is reached over HTTP). The contract checks everything again when
    the batch is submitted, so a stale cache can at worst let a batch that will be skipped into
    the pending store (a device revoked, or a nonce used, in the last seconds); it never refuses
    a valid batch.
    """

    def __init__(
        self,
        contract: Contract,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        nonces: NonceWords | None = None,
        nonce_ttl: float = nonces_mod.DEFAULT_TTL,
        book: DeviceBook | None = None,
    ):
        self.contract, self.book = contract, book
        self.ttl, self.negative_ttl, self.clock = ttl, negative_ttl, clock
        self._ids: dict[str, tuple[int, float]] = {}
        self._info: dict[int, tuple[DeviceRecord, float]] = {}
        self._skew: int | None = None
        self._lock = threading.Lock()
        if nonces is None:  # no HTTP endpoint known: the same word through web3
            nonces = NonceWords(
                lambda device, word: int(contract.functions.nonceBitmap(device, word).call()),
                ttl=nonce_ttl,
                clock=clock,
            )
        self.nonces = nonces

    @classmethod
    def for_deployment(cls, w3: Web3, deployment: Deployment, **kw: Any) -> ChainDevices:
        contract = w3.eth.contract(address=deployment.ledger.address, abi=deployment.ledger.abi)
        rpc_url = getattr(w3.provider, "endpoint_uri", None)
        if "nonces" not in kw and isinstance(rpc_url, str) and rpc_url.startswith(("http://", "https://")):
            timeout = float((getattr(w3.provider, "_request_kwargs", None) or {}).get("timeout", 10))
            reader = JsonRpcWordReader(
                rpc_url, contract.address, nonce_bitmap_selector(deployment.ledger.abi), timeout=timeout
            )
            nonce_ttl = kw.pop("nonce_ttl", nonces_mod.DEFAULT_TTL)
            kw["nonces"] = NonceWords(reader, ttl=nonce_ttl, clock=kw.get("clock", time.monotonic))
            if kw.pop("follow", True):
                follow = {k: kw.pop(k) for k in ("refresh", "max_lag") if k in kw}
                if any(kw.get(k) == 0 for k in ("ttl", "negative_ttl")) or nonce_ttl == 0:
                    follow["refresh"] = follow["min_refresh"] = 0.0  # no caching asked for: follow per lookup
                kw["book"] = DeviceBook(
                    JsonRpc(rpc_url, timeout=timeout),
                    contract.address,
                    deployment.ledger.abi,
                    deployment.deploy_block,
                    reader,
                    clock=kw.get("clock", time.monotonic),
                    **follow,
                )
        for k in ("follow", "refresh", "max_lag"):
            kw.pop(k, None)
        return cls(contract, **kw)

    def device(self, address: str) -> DeviceRecord | None:
        if self.book is not None:
            return self.book.device(address)
        now = self.clock()
        with self._lock:
            hit = self._ids.get(address)
        if hit is not None and now < hit[1]:
            device_id = hit[0]
        else:
            device_id = int(self.contract.functions.deviceIdOf(address).call())
            with self._lock:
                self._ids[address] = (device_id, now + (self.ttl if device_id else self.negative_ttl))
        if not device_id:
            return None
        with self._lock:
            info = self._info.get(device_id)
        if info is not None and (info[0].revoked or now < info[1]):
            return info[0]
        _addr, licensee, revoked_at, not_before = self.contract.functions.deviceInfo(device_id).call()
        record = DeviceRecord(device_id, to_checksum_address(licensee), int(revoked_at), int(not_before))
        with self._lock:
            self._info[device_id] = (record, now + self.ttl)
        return record

    def is_nonce_used(self, device: str, nonce: int) -> bool:
        """Whether the key ``device`` has used ``nonce`` on chain (cached; see the class)."""
        if self.book is not None:
            return self.book.is_nonce_used(device, nonce)
        return self.nonces.is_used(device, nonce)

    def max_clock_skew(self) -> int:
        if self._skew is None:
            try:
                self._skew = int(self.contract.functions.maxClockSkew().call())
            except Exception:  # noqa: BLE001 - an older contract without it: a sane default
                log.warning("maxClockSkew() unreadable; using %s s", DEFAULT_MAX_SKEW)
                self._skew = DEFAULT_MAX_SKEW
        return self._skew


class RegisteredWorks:
    """Which work ids exist: WorkRegistry numbers works 1, 2, 3, ... and never removes one, so a
    work id is registered iff it is at most ``totalWorks()``. The total is re-read (at most every
    ``refresh`` seconds) only when a batch names a higher id than the one cached."""

    def __init__(
        self, total: Callable[[], int], refresh: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._read, self.refresh, self.clock = total, refresh, clock
        self._total, self._read_at = 0, float("-inf")
        self._lock = threading.Lock()

    def known(self, work_id: int) -> bool:
        if work_id <= self._total:
            return True
        with self._lock:
            if self.clock() - self._read_at >= self.refresh:
                self._total, self._read_at = self._read(), self.clock()
            return work_id <= self._total


# ----------------------------------------------------------------------------- group commit


class _Waiter:
    __slots__ = ("values", "done", "batch_id", "error", "lead")

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.done = threading.Event()
        self.batch_id: int | None = None
        self.error: BaseException | None = None
        self.lead = False  # woken to lead the next group rather than with a result


def _insert_statement(dialect: str) -> Any:
    """``INSERT INTO pending_batches ... ON CONFLICT DO NOTHING RETURNING id, digest`` (built once)."""
    t = _PENDING_TABLE
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(t).on_conflict_do_nothing().returning(t.c.id, t.c.digest)
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(t).on_conflict_do_nothing().returning(t.c.id, t.c.digest)
    raise ValueError(f"unsupported database {dialect}: use SQLite or PostgreSQL")


class GroupCommit:
    """Stores the new batches of concurrent callers in shared transactions (group commit).

    A caller that finds no transaction under way leads: it takes every batch queued so far (up to
    ``max_rows``), writes them with one multi-row INSERT (SQLAlchemy's insertmanyvalues) and one
    COMMIT, and hands each waiting caller its batch id. Callers arriving meanwhile queue up and the
    first of them leads the next group. Nobody waits for company: a lone caller is stored at once,
    and under load a group is whatever arrived during the previous commit.

    Guarantees: :meth:`store` returns only after the COMMIT that holds the batch returned (the
    database's durability: SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit``), so an
    acknowledged batch is never lost; the unique (device, nonce) and digest make a batch stored at
    most once (``ON CONFLICT DO NOTHING``: the colliding row is left out and its caller gets None,
    and looks the stored one up). When the transaction fails, every caller of the group gets the
    error and nothing of the group is stored.
    """

    def __init__(self, engine: Engine, max_rows: int = 256) -> None:
        self.engine, self.max_rows = engine, max_rows
        self._statement = _insert_statement(engine.dialect.name)
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._busy = False
        self.groups = self.rows = 0  # transactions and batches stored (for benchmarks)

    def store(self, values: dict[str, Any]) -> int | None:
        """The new batch's id once committed, or None when its (device, nonce) or digest is
        stored already (by an earlier transaction or an earlier batch of the same group)."""
        me = _Waiter(values)
        with self._lock:
            self._queue.append(me)
            lead = not self._busy
            self._busy = True
        if not lead:
            me.done.wait()
        if lead or me.lead:
            self._lead()
        if me.error is not None:
            raise me.error
        return me.batch_id

    def _lead(self) -> None:
        with self._lock:
            group = self._queue[: self.max_rows]
            del self._queue[: self.max_rows]
        try:
            ids = self._write([w.values for w in group])
            for w in group:  # the first caller with a digest gets the row; a duplicate gets None
                w.batch_id = ids.pop(w.values["digest"], None)
        except BaseException as exc:  # noqa: BLE001 - every caller of the group sees it
            for w in group:
                w.error = exc
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._busy = False
                else:
                    successor.lead = True
            for w in group:
                w.done.set()
            if successor is not None:
                successor.done.set()

    def _write(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        with self.engine.begin() as conn:
            stored: dict[str, int] = {row.digest: row.id for row in conn.execute(self._statement, rows)}
        self.groups += 1
        self.rows += len(stored)
        return stored


# ----------------------------------------------------------------------------- context / result


@dataclass
class IngestContext:
    """What ingest needs: the deployment, the chain view and the pending store."""

    chain_id: int
    ledger_address: str
    sessions: sessionmaker[Session]
    devices: ChainDevices
    clock: Callable[[], float] = time.time
    max_skew: int | None = None  # default: the contract's maxClockSkew()
    max_body_bytes: int = MAX_BODY_BYTES
    works: RegisteredWorks | None = None  # None: work ids are not checked (the contract applies them anyway)
    group: GroupCommit | None = None  # default: one for the sessions' engine
    #: unsettled stored batches a device may have (None or 0: no limit)
    max_unsettled: int | None = DEFAULT_DEVICE_BACKLOG
    backlog: DeviceBacklog | None = None  # made from max_unsettled

    def __post_init__(self) -> None:
        self.ledger_address = to_checksum_address(self.ledger_address)
        if self.backlog is None and self.max_unsettled:
            self.backlog = DeviceBacklog(self.sessions, self.max_unsettled)
        if self.group is None:
            bind = self.sessions.kw.get("bind")
            if not isinstance(bind, Engine):
                raise ValueError("IngestContext needs sessions bound to an Engine (or a GroupCommit)")
            self.group = GroupCommit(bind)

    @classmethod
    def create(cls, w3: Web3, deployment: Deployment, engine_or_sessions: Any, **kw: Any) -> IngestContext:
        sessions = (
            engine_or_sessions
            if isinstance(engine_or_sessions, sessionmaker)
            else sessionmaker(engine_or_sessions, expire_on_commit=False)
        )
        cache = {k: kw.pop(k) for k in ("ttl", "negative_ttl", "nonce_ttl", "follow", "refresh", "max_lag") if k in kw}
        if "works" not in kw:
            registry = w3.eth.contract(address=deployment.works.address, abi=deployment.works.abi)
            kw["works"] = RegisteredWorks(lambda: int(registry.functions.totalWorks().call()))
        return cls(
            chain_id=int(w3.eth.chain_id),
            ledger_address=deployment.ledger.address,
            sessions=sessions,
            devices=ChainDevices.for_deployment(w3, deployment, **cache),
            **kw,
        )

    def skew(self) -> int:
        return self.max_skew if self.max_skew is not None else self.devices.max_clock_skew()


@dataclass
class IngestResult:
    """A batch stored as pending (``created``) or found stored already (an identical resend)."""

    batch_id: int
    body: dict[str, Any] = field(default_factory=dict)
    created: bool = True
    status: int = 202


# ----------------------------------------------------------------------------- parsing


#: EIP-55 of a device address as sent (a device sends the same spelling every time; keccak per batch
#: was a few percent of a batch's CPU).
_checksum_address = functools.lru_cache(maxsize=65_536)(to_checksum_address)


def _int_field(payload: dict[str, Any], name: str, maximum: int) -> int:
    if name not in payload:
        raise InvalidBatch(f"field {name!r} is missing")
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidBatch(f"field {name!r} must be an integer")
    if not 0 <= value <= maximum:
        raise InvalidBatch(f"field {name!r} must be in 0..{maximum}, not {value}")
    return int(value)


def _hex_field(payload: dict[str, Any], name: str) -> bytes:
    value = payload.get(name)
    if not isinstance(value, str):
        raise InvalidBatch(f"field {name!r} must be a 0x hex string")
    text = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidBatch(f"field {name!r} is not valid hex") from None


def parse_entries(value: Any) -> bytes:
    """Entry bytes from hex or [[workId, count], ...], validated as the contract requires."""
    if isinstance(value, str):
        text = value[2:] if value[:2] in ("0x", "0X") else value
        if len(text) > 2 * playbatch.ENTRY_SIZE * playbatch.MAX_ENTRIES:
            raise TooManyEntries(
                f"a batch holds at most {playbatch.MAX_ENTRIES} works, not {len(text) // (2 * playbatch.ENTRY_SIZE)}"
            )
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise InvalidEntries("entries are not valid hex") from None
        if len(raw) % playbatch.ENTRY_SIZE:
            raise InvalidEntries("entries must be 6-byte records (work id u32, count u16)")
        pairs = playbatch.decode_entries(raw)
    elif isinstance(value, list):
        if len(value) > playbatch.MAX_ENTRIES:
            raise TooManyEntries(f"a batch holds at most {playbatch.MAX_ENTRIES} works, not {len(value)}")
        pairs = []
        for i, item in enumerate(value):
            if (
                not isinstance(item, list)
                or len(item) != 2
                or any(isinstance(x, bool) or not isinstance(x, int) for x in item)
            ):
                raise InvalidEntries(f"entry {i} must be [workId, count] of integers")
            pairs.append((item[0], item[1]))
        raw = None
    else:
        raise InvalidBatch("field 'entries' must be a 0x hex string or a list of [workId, count]")
    if not pairs:
        raise InvalidEntries("a batch holds at least one work")
    previous = 0
    for i, (work_id, count) in enumerate(pairs):
        if not 1 <= work_id <= playbatch.MAX_WORK_ID:
            raise InvalidEntries(f"entry {i}: work id {work_id} is out of range")
        if work_id <= previous:
            raise InvalidEntries(f"entry {i}: work ids must be strictly increasing ({work_id} after {previous})")
        if not 1 <= count <= playbatch.MAX_COUNT:
            raise InvalidEntries(f"entry {i}: count {count} is not in 1..{playbatch.MAX_COUNT}")
        previous = work_id
    if raw is None:
        raw = b"".join(struct.pack(">IH", w, c) for w, c in pairs)
    return raw


def parse_signature(payload: dict[str, Any]) -> bytes:
    sig = _hex_field(payload, "signature")
    if len(sig) == 65:  # r | s | v: convert to EIP-2098
        r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
        if v not in (0, 1, 27, 28) or s >> 255:
            raise BadSignature("signature is not a valid r|s|v signature")
        sig = playbatch.to_compact_signature(r, s, v)
    elif len(sig) != playbatch.SIGNATURE_SIZE:
        raise InvalidBatch(f"signature must be 64 bytes (EIP-2098) or 65 (r|s|v), not {len(sig)}")
    return sig


@dataclass(frozen=True)
class ParsedBatch:
    batch: playbatch.SignedBatch
    digest: bytes


def parse_batch(payload: Any, ctx: IngestContext) -> ParsedBatch:
    """Shape, limits, times and signature; no database, no node (except a cached skew)."""
    if not isinstance(payload, dict):
        raise InvalidBatch("the body must be a JSON object")
    device = payload.get("device")
    if not isinstance(device, str) or not is_hex_address(device):
        raise InvalidBatch("field 'device' must be a 0x address")
    device = _checksum_address(device)
    nonce = _int_field(payload, "nonce", playbatch.MAX_NONCE)
    from_time = _int_field(payload, "fromTime", UINT32_MAX)
    to_time = _int_field(payload, "toTime", UINT32_MAX)
    if "entries" not in payload:
        raise InvalidBatch("field 'entries' is missing")
    entries = parse_entries(payload["entries"])
    signature = parse_signature(payload)
    if from_time > to_time:
        raise BadTimeRange(f"fromTime {from_time} is after toTime {to_time}")
    if to_time == 0:
        raise BadTimeRange("toTime must be a unix time after 1970-01-01 (the contract skips 0)")
    now = int(ctx.clock())
    if to_time > now + ctx.skew():
        raise BadTimeRange(f"toTime {to_time} is in the future (now {now}, allowed skew {ctx.skew()} s)")
    digest = playbatch.batch_digest(ctx.chain_id, ctx.ledger_address, device, nonce, from_time, to_time, entries)
    # None for an invalid point or scalar and for a high s, which the contract refuses too
    if playbatch.recover_signer(digest, signature) != bytes.fromhex(device[2:]):
        raise BadSignature(
            f"the signature is not by {device} for this batch, chain {ctx.chain_id} and ledger {ctx.ledger_address}"
        )
    batch = playbatch.SignedBatch(device, nonce, from_time, to_time, entries, signature)
    return ParsedBatch(batch, digest)


# ----------------------------------------------------------------------------- ingest


def _answer(row: PendingBatch) -> IngestResult:
    body = {
        "batchId": row.id,
        "state": PENDING,
        "device": row.device,
        "nonce": row.nonce,
        "digest": row.digest,
        "plays": row.plays,
    }
    return IngestResult(row.id, body)


def _stored(session: Session, device: str, nonce: int) -> PendingBatch | None:
    return session.scalars(
        select(PendingBatch).where(PendingBatch.device == device, PendingBatch.nonce == nonce)
    ).one_or_none()


def _same_or_conflict(row: PendingBatch, digest_hex: str) -> IngestResult:
    if row.digest != digest_hex:
        raise NonceConflict(f"device {row.device} already has batch {row.id} stored under nonce {row.nonce}")
    result = _answer(row)
    result.created = False
    return result


def _check_on_chain(ctx: IngestContext, batch: playbatch.SignedBatch) -> DeviceRecord:
    """The device registered and covering the batch, the nonce unused (both cached reads)."""
    record = ctx.devices.device(batch.device)
    if record is None:
        raise UnknownDevice(f"device {batch.device} is not registered on the ledger")
    if not record.covers(batch.to_time):
        raise DeviceRevoked(
            f"device {batch.device} (id {record.device_id}) was revoked at "
            f"{record.revoked_at}, before this batch's toTime {batch.to_time}"
            if record.revoked
            else f"device {batch.device} (id {record.device_id}) was registered after this "
            f"batch's toTime {batch.to_time}"
        )
    if ctx.devices.is_nonce_used(batch.device, batch.nonce):
        raise NonceUsed(f"nonce {batch.nonce} of device {batch.device} is used on chain")
    if ctx.works is not None:
        highest = max(work_id for work_id, _ in playbatch.decode_entries(batch.entries))
        if not ctx.works.known(highest):
            raise UnknownWork(f"work {highest} is not registered on the ledger: its plays would earn nobody anything")
    return record


def _insert(
    ctx: IngestContext, batch: playbatch.SignedBatch, digest_hex: str, record: DeviceRecord, source: str
) -> IngestResult | None:
    """Stores the batch through the group commit (durable before it returns); None when its
    (device, nonce) or digest is stored already."""
    licensee_index, device_number = playbatch.split_device_id(record.device_id)
    plays = batch.plays
    values = {
        "device": batch.device,
        "licensee_index": licensee_index,
        "device_number": device_number,
        "nonce": batch.nonce,
        "from_time": batch.from_time,
        "to_time": batch.to_time,
        "entries": batch.entries,
        "signature": batch.signature,
        "digest": digest_hex,
        "entry_count": len(batch.entries) // playbatch.ENTRY_SIZE,
        "plays": plays,
        "source": source,
        "status": PENDING,
        "attempts": 0,
    }
    now = pending_now()
    values["received_at"] = values["updated_at"] = now
    assert ctx.group is not None
    batch_id = ctx.group.store(values)
    if batch_id is None:
        return None
    body = {
        "batchId": batch_id,
        "state": PENDING,
        "device": batch.device,
        "nonce": batch.nonce,
        "digest": digest_hex,
        "plays": plays,
    }
    return IngestResult(batch_id, body)


def _answer_stored(ctx: IngestContext, batch: playbatch.SignedBatch, digest_hex: str) -> IngestResult | None:
    """The answer for a batch whose (device, nonce) is stored already (identical: the stored
    202 again; different: NonceConflict), or None when nothing is stored under it."""
    with ctx.sessions() as session:
        row = _stored(session, batch.device, batch.nonce)
    return None if row is None else _same_or_conflict(row, digest_hex)


def ingest_batch(
    payload: Any, ctx: IngestContext, source: str = "http", topic_device: str | None = None
) -> IngestResult:
    """Validates a batch and stores it as pending; raises an :class:`IngestError` subclass.

    The answers are those of the documented order (a stored batch is looked at before the
    chain), but the store is read only when it matters: a new batch costs the (cached) chain
    checks and one INSERT + COMMIT; the unique (device, nonce) finds a resend or a conflict when
    the insert collides, and a refusal by the chain (or a node failure) looks the batch up first,
    so that a stored batch is answered as stored whatever the chain says now.
    """
    try:
        parsed = parse_batch(payload, ctx)  # may read maxClockSkew() from the node once
        batch = parsed.batch
        digest_hex = "0x" + parsed.digest.hex()
        if topic_device is not None and topic_device.lower() != batch.device.lower():
            raise TopicMismatch(f"a batch of {batch.device} arrived on the topic of {topic_device}")
        try:
            record = _check_on_chain(ctx, batch)
        except (UnknownDevice, DeviceRevoked, NonceUsed, UnknownWork):
            stored = _answer_stored(ctx, batch, digest_hex)
            if stored is None:
                raise
            return stored
        except Exception as exc:
            if not _is_node_error(exc):
                raise
            stored = _answer_stored(ctx, batch, digest_hex)  # a resend needs no node
            if stored is None:
                raise
            return stored
        if ctx.backlog is None:
            created = _insert(ctx, batch, digest_hex, record, source)
        else:
            key = playbatch.split_device_id(record.device_id)
            try:
                ctx.backlog.admit(key, batch.device)
            except DeviceBacklogFull:
                stored = _answer_stored(ctx, batch, digest_hex)  # a resend of a stored batch is answered
                if stored is None:
                    raise
                return stored
            created = None
            try:
                created = _insert(ctx, batch, digest_hex, record, source)
            finally:
                ctx.backlog.done(key, stored=created is not None)
        if created is None:  # stored already: a resend, a conflict, or a concurrent ingest
            stored = _answer_stored(ctx, batch, digest_hex)
            if stored is None:  # the same digest under another (device, nonce) cannot be
                raise NonceConflict("this batch is stored already") from None
            return stored
        return created
    except IngestError:
        raise
    except (OperationalError, InterfaceError) as exc:
        log.warning("ingest: database unavailable: %s", exc)
        raise Unavailable("the batch store is unavailable; retry later") from None
    except Exception as exc:  # noqa: BLE001
        if _is_node_error(exc):
            log.warning("ingest: node unavailable: %s", exc)
            raise Unavailable("the chain node is unavailable; retry later") from None
        raise


def _is_node_error(exc: Exception) -> bool:
    import requests
    from web3.exceptions import Web3Exception

    return isinstance(
        exc, (requests.RequestException, ConnectionError, TimeoutError, Web3Exception, ChainUnavailableError)
    )


def parse_body(raw: bytes | str, ctx: IngestContext, what: str = "body") -> Any:
    """The JSON value of a raw request body or message, size and syntax checked."""
    if len(raw) > ctx.max_body_bytes:
        raise PayloadTooLarge(f"the {what} is {len(raw)} bytes; at most {ctx.max_body_bytes}")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"the {what} is not JSON: {exc}") from None
    except RecursionError:  # e.g. a thousand nested arrays: a batch is never deeper than 3
        raise MalformedJson(f"the {what} nests too deeply to be a batch") from None


def ingest_json(
    raw: bytes | str, ctx: IngestContext, source: str = "http", topic_device: str | None = None
) -> IngestResult:
    """:func:`ingest_batch` on a raw JSON body (size and syntax checked first)."""
    return ingest_batch(parse_body(raw, ctx), ctx, source=source, topic_device=topic_device)


def handle_json(
    raw: bytes | str, ctx: IngestContext, source: str = "http", topic_device: str | None = None
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for a raw request body: what a route or a consumer answers."""
    try:
        result = ingest_json(raw, ctx, source=source, topic_device=topic_device)
    except IngestError as exc:
        return exc.status, exc.to_json()
    return result.status, result.body
