"""The log source: the deployment's logs and block data, read from the node.

It owns the ``eth_getLogs`` filters (the three contracts; the token only for transfers into or out
of the RoyaltyLedger), the adaptive shrinking of a range the node refuses as too large, and the
cache of block timestamps. Everything here talks to web3; nothing here touches the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from web3 import Web3

from ..chain import Deployment
from ..events import EventDecoder

log = logging.getLogger(__name__)

#: Block timestamps fetched per JSON-RPC batch.
TIMESTAMP_CHUNK = 200
#: The timestamp cache is emptied once it holds more blocks than this.
MAX_CACHED_TIMESTAMPS = 100_000

LogEntry = Any  # a raw log as web3 returns it (an AttributeDict with blockNumber, logIndex, topics, data...)


def looks_like_too_many(exc: Exception) -> bool:
    """Whether a node's refusal of eth_getLogs reads like "too many results" (or a range too large)."""
    text_ = str(exc).lower()
    return any(s in text_ for s in ("too many", "limit", "exceed", "range", "timeout", "timed out", "size"))


class LogSource:
    """Logs of a deployment over block ranges, in (block, log index) order, and block timestamps."""

    def __init__(self, w3: Web3, deployment: Deployment, decoder: EventDecoder) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.ledger_address = deployment.ledger.address
        self._contracts = [deployment.works.address, self.ledger_address]
        self._token = deployment.token.address
        self.timestamps: dict[int, int] = {}
        self.hashes: dict[int, str] = {}  # block number -> 0x hash, of the blocks in ``timestamps``
        self.parents: dict[int, str] = {}  # block number -> 0x hash of its parent
        self._ledger_topic = "0x" + bytes(12).hex() + self.ledger_address[2:].lower()
        self._transfer_topic = decoder.topic("Token", "Transfer")

    def head(self) -> int:
        return self.w3.eth.block_number

    def block_hash(self, number: int) -> str:
        """The 0x-prefixed hash of block ``number``."""
        return "0x" + bytes(self.w3.eth.get_block(number)["hash"]).hex()

    def fetch_logs(self, start: int, end: int) -> list[LogEntry]:
        """The logs of [start, end] in one try."""
        contract_logs = self.w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": self._contracts})
        token = self._token
        token_in = self.w3.eth.get_logs(
            {
                "fromBlock": start,
                "toBlock": end,
                "address": token,
                "topics": [self._transfer_topic, None, self._ledger_topic],
            }
        )
        token_out = self.w3.eth.get_logs(
            {"fromBlock": start, "toBlock": end, "address": token, "topics": [self._transfer_topic, self._ledger_topic]}
        )
        seen = set()
        logs = []
        for entry in list(contract_logs) + list(token_in) + list(token_out):
            key = (entry["blockNumber"], entry["logIndex"])
            if key not in seen:  # a transfer from the ledger to itself matches both filters
                seen.add(key)
                logs.append(entry)
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        return logs

    def logs(self, start: int, end: int) -> tuple[list[LogEntry], int]:
        """Logs of [start, end'] and end': halves the range while the node refuses it (too many results)."""
        while True:
            try:
                return self.fetch_logs(start, end), end
            except Exception as exc:  # nodes differ in how they refuse: error codes, messages, timeouts
                if end == start or not looks_like_too_many(exc):
                    raise
                end = start + (end - start) // 2
                log.info("node refused logs of %d blocks, retrying with %d", end - start + 1, end - start + 1)

    def load_timestamps(self, numbers: Iterable[int]) -> None:
        """Fetches the timestamps of the blocks ``numbers`` not yet in :attr:`timestamps` (emptying
        the cache first when it is full, so what the caller asked for is always there after)."""
        wanted = set(numbers)
        if len(self.timestamps) + len(wanted) > MAX_CACHED_TIMESTAMPS:
            self.forget()
        missing = sorted(n for n in wanted if n not in self.timestamps)
        for i in range(0, len(missing), TIMESTAMP_CHUNK):
            chunk = missing[i : i + TIMESTAMP_CHUNK]
            blocks: list[Any]
            try:
                with self.w3.batch_requests() as batch:
                    for n in chunk:
                        batch.add(self.w3.eth.get_block(n))
                    blocks = batch.execute()
            except Exception:  # noqa: BLE001 - a node without JSON-RPC batches
                blocks = [self.w3.eth.get_block(n) for n in chunk]
            for n, block in zip(chunk, blocks, strict=True):
                self.timestamps[n] = int(block["timestamp"])
                self.hashes[n] = "0x" + bytes(block["hash"]).hex()
                self.parents[n] = "0x" + bytes(block["parentHash"]).hex()

    def forget(self, above: int = -1) -> None:
        """Drops the cached blocks above ``above`` (all by default): after a reorg they may differ."""
        for cache in (self.timestamps, self.hashes, self.parents):
            for n in [n for n in cache if n > above]:
                del cache[n]
