"""The sender: everything between a packed ``submitBatches`` call and its receipt.

It owns gas estimation, EIP-1559 fees (``2 * base fee + tip``; a replacement raises both by
12.5%), signing with the relayer's local account, broadcasting, receipt lookup, and waiting for
a receipt while re-signing a stuck transaction under the same account nonce. Each re-signed
version is recorded through a :class:`TxVersions` store before it is broadcast, so that after a
crash every hash that could be mined is known.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from eth_typing import HexStr
from hexbytes import HexBytes
from sqlalchemy.orm import Session, sessionmaker

from ..errors import RelayerError
from ..pending import RelayTransaction

if TYPE_CHECKING:
    from eth_account.datastructures import SignedTransaction
    from eth_account.signers.local import LocalAccount
    from web3 import Web3
    from web3.contract import Contract
    from web3.types import TxParams, TxReceipt

log = logging.getLogger("ledger.relayer")  # the relayer's one logger, as before the split

Fees = dict[str, int]  # maxFeePerGas, maxPriorityFeePerGas
DEFAULT_TIP = 1_000_000_000  # 1 gwei, for nodes without eth_maxPriorityFeePerGas


def is_connection_error(exc: BaseException) -> bool:
    """The node (or the network to it) is down: callers re-raise instead of judging the call."""
    import requests  # type: ignore[import-untyped,unused-ignore]

    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))


def fees_for(base_fee: int, tip: int, bump_from: Mapping[str, int] | None = None) -> Fees:
    """EIP-1559 fees for the next block; a replacement of a transaction with fees ``bump_from``
    raises both by 12.5% (geth wants >= 10%), or more when the market went up further."""
    fees = {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base_fee + tip}
    if bump_from:
        fees = {k: max(v, bump_from[k] + bump_from[k] // 8 + 1) for k, v in fees.items()}
    return fees


class WaitLimits(Protocol):
    """The settings the sender reads while waiting (RelayerConfig has them)."""

    @property
    def receipt_timeout(self) -> float: ...

    @property
    def bump_after(self) -> float: ...

    @property
    def poll(self) -> float: ...


class TxVersions(Protocol):
    """Where a re-signed version of a recorded transaction is written before it is broadcast."""

    def add_version(self, rtx_id: int, tx_hash: str, raw: bytes) -> list[str]:
        """Records ``tx_hash`` (newest) and its raw bytes; returns every hash of the transaction."""
        ...


class SqlTxVersions:
    """:class:`TxVersions` on the ``relay_transactions`` table, one database transaction each."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def add_version(self, rtx_id: int, tx_hash: str, raw: bytes) -> list[str]:
        with self.sessions.begin() as session:
            rtx = session.get_one(RelayTransaction, rtx_id)
            rtx.tx_hashes = rtx.tx_hashes + "," + tx_hash
            rtx.raw_tx = raw
            return rtx.hashes


class Sender:
    """Signs and sends ``submitBatches`` calls to ``contract`` (at ``to``) as ``account``."""

    def __init__(
        self,
        w3: Web3,
        contract: Contract,
        to: str,
        account: LocalAccount,
        chain_id: int,
        limits: WaitLimits,
        versions: TxVersions,
    ):
        self.w3 = w3
        self.contract = contract
        self.to = to
        self.account = account
        self.chain_id = chain_id
        self.limits = limits
        self.versions = versions
        self._skew: int | None = None

    def horizon(self) -> int:
        """The latest toTime a batch may have to apply in the pending block (and so in any block
        mined after it): the pending block's timestamp + the contract's ``maxClockSkew()``. The gas
        is estimated in that block: a batch past it would be estimated as skipped (cheap) and then
        apply in a later block, running the transaction out of gas."""
        if self._skew is None:
            self._skew = int(self.contract.functions.maxClockSkew().call())
        try:
            block = self.w3.eth.get_block("pending")
        except Exception:  # noqa: BLE001 - a node without a pending block: the latest one
            block = self.w3.eth.get_block("latest")
        return int(block["timestamp"]) + self._skew

    def estimate_gas(self, data: bytes) -> int:
        """Gas of ``submitBatches(data)`` in the pending block (see :meth:`horizon`); raises when the call reverts."""
        params: Any = {
            "from": self.account.address,
            "gas": 0,
            "maxFeePerGas": 0,
            "maxPriorityFeePerGas": 0,
            "nonce": 0,
            "chainId": self.chain_id,
        }
        tx = self.contract.functions.submitBatches(data).build_transaction(params)
        return int(
            self.w3.eth.estimate_gas({"from": self.account.address, "to": self.to, "data": tx["data"]}, "pending")
        )

    def fees(self, bump_from: Mapping[str, int] | None = None) -> Fees:
        """Fees from the latest base fee and the node's tip, raised over ``bump_from`` if given."""
        block = self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas") or 0)
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except Exception:  # noqa: BLE001 - nodes without eth_maxPriorityFeePerGas
            tip = DEFAULT_TIP
        return fees_for(base, tip, bump_from)

    def sign(self, data: bytes, nonce: int, gas: int, fees: Mapping[str, int]) -> tuple[SignedTransaction, TxParams]:
        params: Any = {"from": self.account.address, "nonce": nonce, "gas": gas, "chainId": self.chain_id, **fees}
        tx = self.contract.functions.submitBatches(data).build_transaction(params)
        unsigned: Any = tx
        return self.account.sign_transaction(unsigned), tx

    def broadcast(self, raw: bytes) -> bool:
        """Sends a signed transaction; False when the node refuses it for good."""
        try:
            self.w3.eth.send_raw_transaction(raw)
            return True
        except Exception as exc:  # noqa: BLE001
            if is_connection_error(exc):
                raise
            text = str(exc).lower()
            if "already known" in text or "known transaction" in text or "already imported" in text:
                return True
            log.error("relayer: the node refused the transaction: %s", exc)
            return False

    def receipt(self, hashes: list[str]) -> TxReceipt | None:
        """The receipt of whichever of ``hashes`` was mined, or None."""
        for h in hashes:
            try:
                receipt = self.w3.eth.get_transaction_receipt(HexStr(h))
            except Exception as exc:  # noqa: BLE001 - TransactionNotFound, or not mined yet
                if is_connection_error(exc):
                    raise
                continue
            if receipt is not None and receipt.get("blockNumber") is not None:
                return receipt
        return None

    def known(self, hashes: list[str]) -> bool:
        """Whether the node knows any of ``hashes`` (mined or in its mempool)."""
        for h in hashes:
            try:
                if self.w3.eth.get_transaction(HexStr(h)) is not None:
                    return True
            except Exception as exc:  # noqa: BLE001 - TransactionNotFound
                if is_connection_error(exc):
                    raise
        return False

    def await_receipt(self, rtx_id: int, hashes: list[str], raw: bytes, tx_nonce: int, gas: int) -> TxReceipt:
        """Waits for a receipt of any version of recorded transaction ``rtx_id``, re-signing with
        higher fees when it is stuck. Raises RelayerError on timeout (the row stays `sent`)."""
        start = last_sign = last_gap_check = time.monotonic()
        while True:
            receipt = self.receipt(hashes)
            if receipt is not None:
                return receipt
            now = time.monotonic()
            if now - start > self.limits.receipt_timeout:
                raise RelayerError(f"no receipt for {hashes[-1]} after {self.limits.receipt_timeout:.0f} s")
            if now - last_gap_check > 2.0:
                last_gap_check = now
                if self.account_nonce() < tx_nonce:
                    # The chain lost earlier transactions of ours (a reorg, a devnet restarted from an
                    # older state): this one cannot be mined until they are. Reconcile sends it again.
                    raise RelayerError(
                        f"{hashes[-1]} waits behind a nonce gap: the chain is at account nonce "
                        f"{self.account_nonce()}, it has {tx_nonce}"
                    )
            if now - last_sign > self.limits.bump_after:
                hashes, raw = self.bump(rtx_id, raw, tx_nonce, gas)
                last_sign = time.monotonic()
            time.sleep(self.limits.poll)

    def account_nonce(self) -> int:
        """How many transactions of the relayer account the chain has mined."""
        return int(self.w3.eth.get_transaction_count(self.account.address, "latest"))

    def bump(self, rtx_id: int, raw: bytes, tx_nonce: int, gas: int) -> tuple[list[str], bytes]:
        """Re-signs the transaction ``raw`` under its nonce with higher fees, records the new
        version, then broadcasts it; returns every hash and the new raw transaction."""
        from eth_account.typed_transactions import TypedTransaction

        old = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()  # the stored raw tx is plain bytes
        data = bytes(old["data"])
        inner = bytes(self.contract.decode_function_input(data)[1]["data"])
        fees = self.fees({"maxFeePerGas": old["maxFeePerGas"], "maxPriorityFeePerGas": old["maxPriorityFeePerGas"]})
        signed, _ = self.sign(inner, tx_nonce, gas, fees)
        new_hash = "0x" + bytes(signed.hash).hex()
        hashes = self.versions.add_version(rtx_id, new_hash, bytes(signed.raw_transaction))
        log.warning("relayer: transaction stuck; re-signed as %s with max fee %d", new_hash, fees["maxFeePerGas"])
        self.broadcast(bytes(signed.raw_transaction))
        return hashes, bytes(signed.raw_transaction)
