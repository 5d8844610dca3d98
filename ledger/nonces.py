"""Which play-batch nonces a device key has used on chain, read cheaply for ingest.

The ledger keeps one bitmap per device key: nonce ``n`` is bit ``n & 255`` of the 256-bit word
``n >> 8``, read with ``nonceBitmap(address device, uint256 word)``. :class:`NonceWords` reads a
word with one raw JSON-RPC ``eth_call`` on a pooled HTTP session (web3's contract call costs
three requests and its middleware; the raw call one) and keeps it for ``ttl`` seconds, so a
device sending nonces 0, 1, 2, ... reads a word once per ``ttl``, not once per batch.

Correctness of the cache: a bit only goes from 0 to 1 on chain (the relayer's transactions set
it), so a cached word can be stale in one direction only: it may show a nonce as unused that the
chain has used since. Such a batch is let into the pending store and the relayer's transaction
skips it (``BatchSkipped`` ``NonceUsed``, the batch becomes ``rejected``); batches we already hold
are caught before that by the pending store's unique (device, nonce). A cached *set* bit is never
trusted: :meth:`NonceWords.is_used` reads the word again before it answers "used", so a valid
batch is never refused because of the cache (a reorg or a devnet revert can clear bits).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from eth_utils import keccak

from .errors import ChainUnavailableError

WORD_SHIFT = 8  # 256 nonces per word
BIT_MASK = 0xFF
DEFAULT_TTL = 10.0
MAX_CACHED_WORDS = 100_000

WordReader = Callable[[str, int], int]  # (device address, word index) -> the word


def nonce_bitmap_selector(ledger_abi: list[dict[str, Any]]) -> bytes:
    """The selector of ``nonceBitmap(address,uint256) returns (uint256)``, from the deployment's
    ABI (ABIs come only from the build); ValueError when the ABI has no such function."""
    for item in ledger_abi:
        if item.get("type") == "function" and item.get("name") == "nonceBitmap":
            inputs = [i.get("type") for i in item.get("inputs", [])]
            outputs = [o.get("type") for o in item.get("outputs", [])]
            if inputs == ["address", "uint256"] and outputs == ["uint256"]:
                return keccak(text="nonceBitmap(address,uint256)")[:4]
    raise ValueError("the ledger ABI has no nonceBitmap(address,uint256) returns (uint256)")


class JsonRpc:
    """Raw JSON-RPC over one kept-alive HTTP session (web3 costs several requests and its
    middleware per call; these are plain POSTs). Failures raise :class:`ChainUnavailableError`."""

    def __init__(self, url: str, timeout: float = 10.0, pool_size: int = 4) -> None:
        self.url, self.timeout = url, timeout
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._ids = itertools.count(1)

    def __call__(self, method: str, params: list[Any]) -> Any:
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            response = self.session.post(self.url, json=request, timeout=self.timeout)
            response.raise_for_status()
            answer = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ChainUnavailableError(f"{method} to {self.url} failed: {exc}") from None
        if not isinstance(answer, dict) or "result" not in answer:
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise ChainUnavailableError(f"{method} to {self.url} answered {error!r}")
        return answer["result"]

    def close(self) -> None:
        self.session.close()


class JsonRpcWordReader:
    """``nonceBitmap(device, word)`` by one raw ``eth_call`` over a :class:`JsonRpc` session."""

    def __init__(self, rpc_url: str, ledger_address: str, selector: bytes, timeout: float = 10.0, pool_size: int = 16):
        self.rpc = JsonRpc(rpc_url, timeout=timeout, pool_size=pool_size)
        self.rpc_url, self.ledger_address, self.selector = rpc_url, ledger_address, selector

    def __call__(self, device: str, word: int) -> int:
        data = (self.selector + bytes(12) + bytes.fromhex(device[2:]) + word.to_bytes(32, "big")).hex()
        result = self.rpc("eth_call", [{"to": self.ledger_address, "data": "0x" + data}, "latest"])
        if not isinstance(result, str) or not result.startswith("0x") or len(result) != 66:
            raise ChainUnavailableError(f"nonceBitmap eth_call to {self.rpc_url} answered {result!r}")
        return int(result, 16)

    def close(self) -> None:
        self.rpc.close()


class NonceWords:
    """Nonce bitmap words of device keys, cached for ``ttl`` seconds (see the module docstring)."""

    def __init__(
        self,
        read_word: WordReader,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        max_words: int = MAX_CACHED_WORDS,
    ):
        self.read_word, self.ttl, self.clock, self.max_words = read_word, ttl, clock, max_words
        self._words: dict[tuple[str, int], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def _fetch(self, device: str, word: int) -> int:
        bits = self.read_word(device, word)
        now = self.clock()
        with self._lock:
            if len(self._words) >= self.max_words:
                self._words = {k: v for k, v in self._words.items() if v[1] > now}
                if len(self._words) >= self.max_words:
                    self._words.clear()
            self._words[(device, word)] = (bits, now + self.ttl)
        return bits

    def is_used(self, device: str, nonce: int) -> bool:
        """Whether the chain has used ``nonce`` of the key ``device`` (may answer False for a
        nonce used in the last ``ttl`` seconds; never True for an unused one)."""
        word, bit = nonce >> WORD_SHIFT, 1 << (nonce & BIT_MASK)
        key = (device, word)
        with self._lock:
            hit = self._words.get(key)
        if hit is not None and self.clock() < hit[1] and not hit[0] & bit:
            return False
        return bool(self._fetch(device, word) & bit)
