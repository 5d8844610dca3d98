"""Devices and used nonces of the ledger, followed from its events, so that ingest reads no chain
state per batch.

Ingest must refuse a batch of an unknown or revoked device key, or one whose nonce the chain has
used. Read per batch (``deviceIdOf``, ``deviceInfo``, ``nonceBitmap``), that is two or three
``eth_call`` requests; short per-key caches only help devices that send often, and a venue's
player sends a 20-play batch every few minutes, so with thousands of devices nearly every batch
missed them (W2-small: 2,000 devices). :class:`DeviceBook` instead keeps:

- **every device registration** of the ledger, loaded once from its ``DeviceRegistered`` and
  ``DeviceRevoked`` events (``eth_getLogs`` from the deployment block), so a key's current
  device id, licensee, revocation time and ``notBefore`` (the revocation time of the key's
  previous registration, as the contract sets it) are known without a call;
- **the nonces applied since it started**, from ``PlaysRecorded`` (the contract sets a nonce's
  bit exactly when it applies the batch; a skipped batch leaves it unset), ORed per
  (key, bitmap word) over a word read once from the chain (``nonceBitmap``, at the latest block)
  the first time the key's word is needed. Bits only go from 0 to 1, so the word read once OR the
  bits applied since start is the word as of the last block followed.

It follows the chain with one ``eth_getLogs`` (plus ``eth_blockNumber`` and the hash of the last
block followed, to notice a reorg) at most every ``refresh`` seconds, done by whichever caller
finds the view due (the others go on with the view they have). So the view is at most about
``refresh`` seconds old, against the 30 s device cache and 10 s nonce cache it replaces. What a
stale view can do, and why it is safe:

- It can take a key for registered and unrevoked, or a nonce for unused, that the last second
  changed: the batch is stored, and the contract, which checks everything again, skips it
  (``BatchSkipped``), and the relayer marks it ``rejected``. A batch is never counted twice.
- It never refuses a valid batch on stale grounds: before an answer of "unknown" or "revoked"
  the view is brought up to the head (one ``eth_getBlockByNumber`` when no block came since;
  a batch of a key registered a moment ago is taken), and a nonce seen as used is read again
  from the chain before it is refused (a reorg can clear a bit).
- A reorg (the hash of the last block followed changed) or a gap makes it load everything again.
- If the node cannot be reached, the view is used while it is younger than ``max_lag``; after
  that each lookup raises :class:`ChainUnavailableError` (ingest answers 503 ``unavailable``),
  as the per-key reads did.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

from .errors import ChainUnavailableError

log = logging.getLogger(__name__)

WORD_SHIFT = 8  # a nonce bitmap word holds 256 nonces
BIT_MASK = 0xFF
RECORD_HEADER = 34  # PlaysRecorded record: deviceId u64, nonce u32, fromTime, toTime, charged u96, n u16
MAX_WORDS = 1_000_000  # (key, word) pairs kept; beyond that both maps are dropped and read again


@dataclass
class DeviceRecord:
    """A registration of a device key: it covers batches with ``not_before < toTime`` and, once
    revoked, ``toTime <= revoked_at`` (plays before the revocation stay chargeable)."""

    device_id: int
    licensee: str
    revoked_at: int = 0  # 0: not revoked
    not_before: int = 0

    @property
    def revoked(self) -> bool:
        return self.revoked_at != 0

    def covers(self, to_time: int) -> bool:
        """Whether a batch ending at ``to_time`` falls within this registration."""
        return self.not_before < to_time and (not self.revoked or to_time <= self.revoked_at)


def event_topic(abi: list[dict[str, Any]], name: str) -> str:
    """topic0 of the event ``name`` of an ABI (its canonical signature's keccak), as 0x hex."""
    for item in abi:
        if item.get("type") == "event" and item.get("name") == name:
            types = ",".join(str(i["type"]) for i in item.get("inputs", []))
            return "0x" + keccak(text=f"{name}({types})").hex()
    raise ValueError(f"the ABI has no event {name}")


class DeviceBook:
    """The ledger's devices and the nonces applied since start, followed from its events (see
    the module docstring). Thread-safe; lookups never wait for the node unless the view is
    older than ``max_lag`` or a refusal is about to be answered."""

    def __init__(
        self,
        rpc: Callable[[str, list[Any]], Any],
        ledger_address: str,
        ledger_abi: list[dict[str, Any]],
        deploy_block: int,
        read_word: Callable[[str, int], int],
        refresh: float = 1.0,
        min_refresh: float = 0.0,
        max_lag: float = 30.0,
        chunk: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        max_words: int = MAX_WORDS,
    ) -> None:
        self.rpc, self.read_word = rpc, read_word
        self.address = to_checksum_address(ledger_address)
        self.deploy_block, self.chunk, self.max_words = deploy_block, chunk, max_words
        self.refresh, self.min_refresh, self.max_lag, self.clock = refresh, min_refresh, max_lag, clock
        self.topic_registered = event_topic(ledger_abi, "DeviceRegistered")
        self.topic_revoked = event_topic(ledger_abi, "DeviceRevoked")
        self.topic_plays = event_topic(ledger_abi, "PlaysRecorded")
        self._lock = threading.Lock()  # the maps below
        self._sync_lock = threading.Lock()  # one follower at a time
        self._ids: dict[str, int] = {}  # key (EIP-55) -> its latest device id
        self._records: dict[int, DeviceRecord] = {}
        self._keys: dict[int, str] = {}  # device id -> key
        self._words: dict[tuple[str, int], int] = {}  # (key, word) -> the word as read once
        self._applied: dict[tuple[str, int], int] = {}  # (key, word) -> bits applied since start
        self._block = -1  # last block followed (-1: nothing loaded)
        self._block_hash: str | None = None
        self._synced_at = float("-inf")  # clock when the view was last brought to the head
        self.syncs = self.loads = 0  # for benchmarks and tests

    # ------------------------------------------------------------------ following the chain

    def _logs(self, start: int, end: int, topics: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for lo in range(start, end + 1, self.chunk):
            hi = min(end, lo + self.chunk - 1)
            out += self.rpc(
                "eth_getLogs", [{"address": self.address, "fromBlock": hex(lo), "toBlock": hex(hi), "topics": [topics]}]
            )
        out.sort(key=lambda e: (int(e["blockNumber"], 16), int(e["logIndex"], 16)))
        return out

    def _apply(self, logs: list[dict[str, Any]]) -> None:
        """Applies logs in chain order (under ``_lock``)."""
        for e in logs:
            if e.get("removed"):
                continue
            topics = e["topics"]
            if topics[0] == self.topic_plays:
                self._apply_plays(bytes.fromhex(e["data"][2:]))
            elif topics[0] == self.topic_registered:
                device_id = int(topics[1], 16)
                key = to_checksum_address("0x" + topics[2][-40:])
                previous = self._records.get(self._ids.get(key, 0))
                # the contract: notBefore = the revocation time of the key's previous registration
                not_before = previous.revoked_at if previous is not None else 0
                self._records[device_id] = DeviceRecord(
                    device_id, to_checksum_address("0x" + topics[3][-40:]), 0, not_before
                )
                self._ids[key], self._keys[device_id] = device_id, key
            elif topics[0] == self.topic_revoked:
                record = self._records.get(int(topics[1], 16))
                if record is not None:
                    record.revoked_at = int(e["data"][2:66], 16)

    def _apply_plays(self, data: bytes) -> None:
        # ABI-encoded `bytes records`: offset, length, the records
        length = int.from_bytes(data[32:64], "big")
        records = data[64 : 64 + length]
        i = 0
        while i + RECORD_HEADER <= len(records):
            device_id = int.from_bytes(records[i : i + 8], "big")
            nonce = int.from_bytes(records[i + 8 : i + 12], "big")
            n = int.from_bytes(records[i + 32 : i + 34], "big")
            i += RECORD_HEADER + 6 * n
            key = self._keys.get(device_id)
            if key is None:  # cannot be (a batch of an unregistered id is never applied)
                continue
            word = (key, nonce >> WORD_SHIFT)
            self._applied[word] = self._applied.get(word, 0) | (1 << (nonce & BIT_MASK))

    def _load(self, head: int, head_hash: str) -> None:
        """Everything again: the devices from the deployment block to ``head``; nonces from now on."""
        logs = self._logs(self.deploy_block, head, [self.topic_registered, self.topic_revoked])
        with self._lock:
            self._ids, self._records, self._keys = {}, {}, {}
            self._words, self._applied = {}, {}
            self._apply(logs)
            self._block, self._block_hash = head, head_hash
            self.loads += 1

    def _block_at(self, tag: str) -> tuple[int, str] | None:
        block = self.rpc("eth_getBlockByNumber", [tag, False])
        if not isinstance(block, dict):
            return None
        return int(block["number"], 16), str(block["hash"])

    def sync(self, wait: bool = True, due: float = 0.0) -> None:
        """Brings the view to the chain's head, one caller at a time (raises
        :class:`ChainUnavailableError` when the node cannot be reached). ``wait=False``: return at
        once if another caller is at it; ``due``: nothing to do if the view was brought to the
        head less than ``due`` seconds ago (by the caller waited for)."""
        if not self._sync_lock.acquire(blocking=wait):
            return
        try:
            started = self.clock()
            if started - self._synced_at < due:
                return
            head = self._block_at("latest")
            if head is None:
                raise ChainUnavailableError("eth_getBlockByNumber(latest) answered nothing")
            number, head_hash = head
            if self._block < 0 or number < self._block:
                self._load(number, head_hash)
            elif number > self._block:
                known = self._block_at(hex(self._block))
                if known is None or known[1] != self._block_hash:  # a reorg under the view
                    log.warning("device book: block %d changed under the view; loading again", self._block)
                    self._load(number, head_hash)
                else:
                    topics = [self.topic_registered, self.topic_revoked, self.topic_plays]
                    logs = self._logs(self._block + 1, number, topics)
                    with self._lock:
                        self._apply(logs)
                        self._block, self._block_hash = number, head_hash
            elif head_hash != self._block_hash:  # same height, another block
                self._load(number, head_hash)
            self._synced_at = started
            self.syncs += 1
        finally:
            self._sync_lock.release()

    def _fresh(self, force: bool = False) -> None:
        """Follows the chain if the view is due: older than ``refresh`` s, or always when
        ``force`` (one ``eth_getBlockByNumber`` when the head has not moved). A caller does not
        wait for another one following meanwhile, unless the view is older than ``max_lag`` or
        ``force``; then it raises if the node cannot be reached."""
        due = self.min_refresh if force else self.refresh
        age = self.clock() - self._synced_at
        if age < due:
            return
        if force or age >= self.max_lag:
            self.sync(due=due)
            return
        try:
            self.sync(wait=False, due=due)
        except ChainUnavailableError as exc:  # the view is still young enough to answer from
            log.warning("device book: cannot follow the chain (view %.1f s old): %s", age, exc)

    # ------------------------------------------------------------------ lookups

    def device(self, key: str) -> DeviceRecord | None:
        """The latest registration of ``key`` (EIP-55), None if it was never registered. A
        missing or revoked answer is given from a view brought to the head first."""
        self._fresh()
        device_id = self._ids.get(key)
        record = self._records.get(device_id) if device_id is not None else None
        if record is None or record.revoked:
            self._fresh(force=True)
            device_id = self._ids.get(key)
            record = self._records.get(device_id) if device_id is not None else None
        return record

    def is_nonce_used(self, key: str, nonce: int) -> bool:
        """Whether the chain has used ``nonce`` of ``key`` (as of the view; "used" is read again
        from the chain before it is answered)."""
        self._fresh()
        word, bit = (key, nonce >> WORD_SHIFT), 1 << (nonce & BIT_MASK)
        with self._lock:
            base = self._words.get(word)
            applied = self._applied.get(word, 0)
            loads = self.loads
        if base is not None and not (base | applied) & bit:
            return False
        bits = self.read_word(key, word[1])  # at the latest block: includes all applied so far
        with self._lock:
            if len(self._words) >= self.max_words or len(self._applied) >= self.max_words:
                # the word read at the latest block covers everything applied before it
                self._words, self._applied = {}, {}
            if self.loads == loads:  # not loaded again meanwhile (what was applied before is gone)
                self._words[word] = bits
        # A bit applied but not in the word read now was undone by a reorg; the reorg makes the
        # view load again at its next sync.
        return bool(bits & bit)

    def known_words(self) -> int:
        return len(self._words)
