"""The relayer: packs pending play batches into ``submitBatches`` transactions and settles them.

One relayer process per relayer key (``ledger relay``). Each round:

1. **Pack**: pending batches, sorted by (licensee index, device number, nonce), grouped by
   licensee, as many as fit in ``max_input_bytes`` of transaction input (default 131,072 - 512:
   a default geth node refuses transactions over 128 KiB into its mempool; the 512 bytes are
   left for the rest of the signed transaction) and under ``gas_cap`` gas (default 14,000,000),
   checked with ``eth_estimateGas``; too much gas shrinks the pack and estimates again.
2. **Record, then send**: the transaction is signed locally (account nonce from the node's
   pending count, EIP-1559 fees from the latest base fee and ``eth_maxPriorityFeePerGas``);
   its hash and raw bytes are written to ``relay_transactions`` and its batches marked
   ``inflight`` in ONE database transaction, and only then is it broadcast.
3. **Wait** for the receipt; a transaction stuck longer than ``bump_after`` seconds is signed
   again under the same account nonce with fees raised by 12.5% (each new hash is recorded
   before it is broadcast), so exactly one version can be mined.
4. **Settle** from the receipt's events, in one database transaction: a batch in
   ``PlaysRecorded`` -> ``confirmed``; in ``BatchSkipped`` with reason ``InsufficientEscrow`` ->
   ``pending`` again (retried after ``escrow_retry_after`` seconds, i.e. after a top-up); any
   other reason -> ``rejected`` with the reason; a reverted transaction -> all ``pending``.

**Crash safety.** At start (and every round) transactions still ``sent`` are reconciled: by
their receipt if one of their hashes was mined; else, if the account nonce is not used yet, the
recorded raw transaction is broadcast again and awaited; else (another transaction took the
nonce) each batch is settled from chain state: its nonce unused -> ``pending``; used and found
in a ``PlaysRecorded`` event since the transaction was signed -> ``confirmed``; used and not
found -> ``rejected`` (``NonceUsed``). The contract never applies a (device, nonce) twice, so
a batch can end in exactly one state and is never counted twice.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterable, Optional

from sqlalchemy import or_, select, update
from sqlalchemy.orm import sessionmaker

from .. import playbatch
from ..chain import Deployment
from ..config import DEFAULT_GAS_CAP, MAX_TX_BYTES
from ..errors import RelayerError
from ..pending import (CONFIRMED, INFLIGHT, PENDING, REJECTED, TX_DONE, TX_SENT, PendingBatch, RelayTransaction,
                       utcnow)

log = logging.getLogger(__name__)

ENVELOPE_RESERVE = 512  # signature, nonce, fees, gas, to, value, chain id, RLP headers
FIXED_INPUT = 4 + 32 + 32  # selector, offset of `data`, length of `data`
INSUFFICIENT_ESCROW = "InsufficientEscrow"

def input_size(data_len: int) -> int:
    """Bytes of `submitBatches(data)` calldata for `data` of this length (ABI-padded)."""
    return FIXED_INPUT + (data_len + 31) // 32 * 32


@dataclass
class RelayerConfig:
    gas_cap: int = DEFAULT_GAS_CAP
    max_input_bytes: int = MAX_TX_BYTES - ENVELOPE_RESERVE
    gas_margin: float = 0.15  # gas limit = estimate * (1 + margin), at most gas_cap
    receipt_timeout: float = 600.0
    bump_after: float = 60.0  # seconds without a receipt before re-signing with higher fees
    poll: float = 0.05  # receipt polling
    idle_sleep: float = 1.0  # `run` sleeps this long when nothing is pending
    escrow_retry_after: float = 60.0  # seconds before an unpayable batch is packed again
    log_scan_blocks: int = 5000  # eth_getLogs range when settling from chain state


@dataclass
class RelayReport:
    """What one transaction did."""

    tx_hash: str
    batches: int
    plays: int
    calldata: int
    gas_used: int = 0
    confirmed: int = 0
    rejected: int = 0
    repending: int = 0
    reverted: bool = False
    reasons: dict = field(default_factory=dict)


class Relayer:
    """Relays the pending store to the RoyaltyLedger of ``deployment`` as ``account``."""

    def __init__(self, w3, deployment: Deployment, account, sessions, config: RelayerConfig | None = None):
        self.w3 = w3
        self.deployment = deployment
        self.ledger_address = deployment.ledger.address
        self.events = deployment.event_decoder()
        self.account = account
        self.sessions = sessions if isinstance(sessions, sessionmaker) else sessionmaker(sessions,
                                                                                         expire_on_commit=False)
        self.config = config or RelayerConfig()
        self.contract = w3.eth.contract(address=self.ledger_address, abi=deployment.ledger.abi)
        self.chain_id = int(w3.eth.chain_id)

    # ------------------------------------------------------------------------- packing
    def _candidates(self, session, limit: int) -> list[PendingBatch]:
        retry_before = utcnow() - timedelta(seconds=self.config.escrow_retry_after)
        stmt = (select(PendingBatch)
                .where(PendingBatch.status == PENDING,
                       or_(PendingBatch.reason.is_(None), PendingBatch.reason != INSUFFICIENT_ESCROW,
                           PendingBatch.updated_at < retry_before))
                .order_by(PendingBatch.licensee_index, PendingBatch.device_number, PendingBatch.nonce)
                .limit(limit))
        return list(session.scalars(stmt))

    @staticmethod
    def _queued(row: PendingBatch) -> playbatch.QueuedBatch:
        return playbatch.QueuedBatch(row.licensee_index, row.device_number, playbatch.SignedBatch(
            row.device, row.nonce, row.from_time, row.to_time, row.entries, row.signature), ref=row)

    def _fit_bytes(self, rows: list[PendingBatch]) -> list[PendingBatch]:
        """The first call's worth of rows (by licensee order) under max_input_bytes."""
        calls = playbatch.plan_calls([self._queued(r) for r in rows], self.config.max_input_bytes)
        return [q.ref for q in calls[0]] if calls else []

    @classmethod
    def encode(cls, rows: list[PendingBatch]) -> bytes:
        return playbatch.encode_call([cls._queued(r) for r in rows])

    def _estimate(self, data: bytes) -> int:
        tx = self.contract.functions.submitBatches(data).build_transaction(
            {"from": self.account.address, "gas": 0, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0,
             "nonce": 0, "chainId": self.chain_id})
        return int(self.w3.eth.estimate_gas({"from": self.account.address, "to": self.ledger_address,
                                             "data": tx["data"]}))

    def pack(self, session) -> tuple[list[PendingBatch], bytes, int]:
        """(batches, submitBatches data, gas estimate) of the next transaction, or ([], b'', 0)."""
        cap_rows = self.config.max_input_bytes // (playbatch.BATCH_HEADER_SIZE + playbatch.ENTRY_SIZE
                                                   + playbatch.SIGNATURE_SIZE) + 1
        rows = self._fit_bytes(self._candidates(session, cap_rows))
        while rows:
            data = self.encode(rows)
            try:
                gas = self._estimate(data)
            except Exception as exc:  # noqa: BLE001 - a revert (or an out-of-gas estimate) for this pack
                if _is_connection_error(exc):
                    raise
                if len(rows) == 1:
                    log.error("relayer: batch %s reverts the call on its own (%s); rejecting it", rows[0].id, exc)
                    self._reject_unsendable(session, rows[0], "Reverted")
                    rows = self._fit_bytes(self._candidates(session, cap_rows))
                    continue
                log.warning("relayer: estimate failed for %d batches (%s); halving", len(rows), exc)
                rows = rows[:len(rows) // 2]
                continue
            if gas <= self.config.gas_cap:
                return rows, data, gas
            shrink = playbatch.shrink_for_gas(len(rows), gas, self.config.gas_cap)
            log.info("relayer: %d batches need %d gas > cap %d; trying %d", len(rows), gas, self.config.gas_cap,
                     shrink)
            rows = rows[:shrink]
        return [], b"", 0

    def _reject_unsendable(self, session, row: PendingBatch, reason: str) -> None:
        row.status, row.reason = REJECTED, reason
        session.commit()

    # ------------------------------------------------------------------------- sending
    def _fees(self, bump_from: Optional[dict] = None) -> dict:
        block = self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas") or 0)
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except Exception:  # noqa: BLE001 - nodes without eth_maxPriorityFeePerGas
            tip = 1_000_000_000
        fees = {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip}
        if bump_from:  # a replacement must raise both by >= 10% (geth); use 12.5%
            fees = {k: max(v, bump_from[k] + bump_from[k] // 8 + 1) for k, v in fees.items()}
        return fees

    def _sign(self, data: bytes, nonce: int, gas: int, fees: dict):
        tx = self.contract.functions.submitBatches(data).build_transaction(
            {"from": self.account.address, "nonce": nonce, "gas": gas, "chainId": self.chain_id, **fees})
        return self.account.sign_transaction(tx), tx

    def _broadcast(self, raw: bytes) -> bool:
        """Sends a signed transaction; False when the node refuses it for good."""
        try:
            self.w3.eth.send_raw_transaction(raw)
            return True
        except Exception as exc:  # noqa: BLE001
            if _is_connection_error(exc):
                raise
            text = str(exc).lower()
            if "already known" in text or "known transaction" in text or "already imported" in text:
                return True
            log.error("relayer: the node refused the transaction: %s", exc)
            return False

    def relay_once(self) -> Optional[RelayReport]:
        """Packs, records, sends, awaits and settles one transaction; None when nothing is pending."""
        with self.sessions() as session:
            rows, data, estimate = self.pack(session)
            if not rows:
                return None
            ids = [r.id for r in rows]
            plays = sum(r.plays for r in rows)
            session.commit()  # end the read; the write below is its own transaction
            gas = min(int(estimate * (1 + self.config.gas_margin)) + 10_000, max(self.config.gas_cap, estimate))
            nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
            signed, tx = self._sign(data, nonce, gas, self._fees())
            tx_hash = "0x" + bytes(signed.hash).hex()
            rtx = RelayTransaction(sender=self.account.address, tx_nonce=nonce, tx_hashes=tx_hash,
                                   raw_tx=bytes(signed.raw_transaction), gas_limit=gas,
                                   calldata_size=len(tx["data"]) // 2 - 1, batch_count=len(rows),
                                   sent_block=self.w3.eth.block_number, status=TX_SENT)
            session.add(rtx)
            session.flush()
            moved = session.execute(update(PendingBatch)
                                    .where(PendingBatch.id.in_(ids), PendingBatch.status == PENDING)
                                    .values(status=INFLIGHT, relay_tx_id=rtx.id,
                                            attempts=PendingBatch.attempts + 1, updated_at=utcnow())
                                    .execution_options(synchronize_session=False)).rowcount
            if moved != len(ids):
                session.rollback()
                raise RelayerError(f"{len(ids) - moved} batches changed state while packing; is a second "
                                   "relayer running with this database?")
            session.commit()  # recorded: from here a crash is reconciled from this row
            rtx_id = rtx.id
        log.info("relayer: sending %s: %d batches, %d plays, %d bytes, gas limit %d (estimate %d)",
                 tx_hash, len(ids), plays, rtx.calldata_size, gas, estimate)
        if not self._broadcast(bytes(signed.raw_transaction)):
            self._abandon(rtx_id)
            return RelayReport(tx_hash, len(ids), plays, rtx.calldata_size, reverted=True, repending=len(ids))
        receipt = self._await(rtx_id)
        report = self._settle(rtx_id, receipt)
        report.plays = plays
        return report

    def _abandon(self, rtx_id: int) -> None:
        """The node refused the transaction outright: nothing was broadcast, batches go back."""
        with self.sessions.begin() as session:
            rtx = session.get(RelayTransaction, rtx_id)
            rtx.status = TX_DONE
            session.execute(update(PendingBatch).where(PendingBatch.relay_tx_id == rtx_id,
                                                       PendingBatch.status == INFLIGHT)
                            .values(status=PENDING, relay_tx_id=None, updated_at=utcnow())
                            .execution_options(synchronize_session=False))

    def _receipt(self, hashes: list[str]):
        for h in hashes:
            try:
                receipt = self.w3.eth.get_transaction_receipt(h)
            except Exception as exc:  # noqa: BLE001 - TransactionNotFound, or not mined yet
                if _is_connection_error(exc):
                    raise
                continue
            if receipt is not None and receipt.get("blockNumber") is not None:
                return receipt
        return None

    def _await(self, rtx_id: int):
        """Waits for a receipt of any version of the transaction, re-signing with higher fees
        when it is stuck. Raises RelayerError on timeout (the row stays `sent`)."""
        with self.sessions() as session:
            rtx = session.get(RelayTransaction, rtx_id)
            hashes, raw, tx_nonce, gas = rtx.hashes, rtx.raw_tx, rtx.tx_nonce, rtx.gas_limit
        start = last_sign = time.monotonic()
        while True:
            receipt = self._receipt(hashes)
            if receipt is not None:
                return receipt
            now = time.monotonic()
            if now - start > self.config.receipt_timeout:
                raise RelayerError(f"no receipt for {hashes[-1]} after {self.config.receipt_timeout:.0f} s")
            if now - last_sign > self.config.bump_after:
                hashes, raw = self._bump(rtx_id, raw, tx_nonce, gas)
                last_sign = time.monotonic()
            time.sleep(self.config.poll)

    def _bump(self, rtx_id: int, raw: bytes, tx_nonce: int, gas: int) -> tuple[list[str], bytes]:
        from eth_account.typed_transactions import TypedTransaction

        old = TypedTransaction.from_bytes(raw).as_dict()
        data = bytes(old["data"])
        inner = bytes(self.contract.decode_function_input(data)[1]["data"])
        fees = self._fees({"maxFeePerGas": old["maxFeePerGas"], "maxPriorityFeePerGas": old["maxPriorityFeePerGas"]})
        signed, _ = self._sign(inner, tx_nonce, gas, fees)
        new_hash = "0x" + bytes(signed.hash).hex()
        with self.sessions.begin() as session:
            rtx = session.get(RelayTransaction, rtx_id)
            rtx.tx_hashes = rtx.tx_hashes + "," + new_hash
            rtx.raw_tx = bytes(signed.raw_transaction)
            hashes = rtx.hashes
        log.warning("relayer: transaction stuck; re-signed as %s with max fee %d", new_hash, fees["maxFeePerGas"])
        self._broadcast(bytes(signed.raw_transaction))
        return hashes, bytes(signed.raw_transaction)

    # ------------------------------------------------------------------------- settling
    def _settle(self, rtx_id: int, receipt) -> RelayReport:
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        block = int(receipt["blockNumber"])
        with self.sessions.begin() as session:
            rtx = session.get(RelayTransaction, rtx_id)
            rows = list(session.scalars(select(PendingBatch).where(PendingBatch.relay_tx_id == rtx_id,
                                                                   PendingBatch.status == INFLIGHT)))
            report = RelayReport(tx_hash, len(rows), sum(r.plays for r in rows), rtx.calldata_size,
                                 gas_used=int(receipt["gasUsed"]))
            rtx.status, rtx.mined_tx_hash, rtx.mined_block, rtx.gas_used = TX_DONE, tx_hash, block, report.gas_used
            if int(receipt["status"]) != 1:
                report.reverted = True
                log.error("relayer: %s reverted; %d batches go back to pending", tx_hash, len(rows))
                for row in rows:
                    row.status, row.relay_tx_id = PENDING, None
                report.repending = len(rows)
                return report
            outcome = playbatch.batch_outcome(e for e in map(self.events.decode, receipt["logs"]) if e is not None)
            for row in rows:
                key = (row.device_id, row.nonce)
                if key in outcome.applied:
                    row.status, row.reason = CONFIRMED, None
                    row.confirmed_tx_hash, row.confirmed_block = tx_hash, block
                    report.confirmed += 1
                elif key in outcome.skipped:
                    reason = outcome.skipped[key]
                    report.reasons[reason] = report.reasons.get(reason, 0) + 1
                    row.reason = reason
                    if reason == INSUFFICIENT_ESCROW:
                        row.status, row.relay_tx_id = PENDING, None
                        report.repending += 1
                    else:
                        row.status = REJECTED
                        report.rejected += 1
                else:  # the contract names every batch; if not, the chain's nonce state decides later
                    log.error("relayer: batch %s (device %s nonce %s) is in neither event of %s", row.id,
                              row.device_id, row.nonce, tx_hash)
                    row.status, row.relay_tx_id = PENDING, None
                    report.repending += 1
        log.info("relayer: %s mined in block %d: %d confirmed, %d rejected %s, %d back to pending, gas %d",
                 tx_hash, block, report.confirmed, report.rejected, report.reasons or "", report.repending,
                 report.gas_used)
        return report

    def reconcile(self) -> list[RelayReport]:
        """Settles every transaction left `sent` (after a crash, or a timeout)."""
        with self.sessions() as session:
            open_ids = list(session.scalars(select(RelayTransaction.id).where(RelayTransaction.status == TX_SENT)
                                            .order_by(RelayTransaction.tx_nonce)))
        reports = []
        for rtx_id in open_ids:
            with self.sessions() as session:
                rtx = session.get(RelayTransaction, rtx_id)
                hashes, raw, sender, tx_nonce = rtx.hashes, rtx.raw_tx, rtx.sender, rtx.tx_nonce
            receipt = self._receipt(hashes)
            if receipt is None:
                if self._known(hashes) or self.w3.eth.get_transaction_count(sender, "latest") <= tx_nonce:
                    log.warning("relayer: reconciling %s: not mined; broadcasting it again", hashes[-1])
                    if self._broadcast(raw):
                        receipt = self._await(rtx_id)
                    elif self.w3.eth.get_transaction_count(sender, "latest") <= tx_nonce:
                        self._abandon(rtx_id)  # refused outright and its nonce is free: nothing can mine it
                        continue
                if receipt is None:
                    reports.append(self._settle_from_chain(rtx_id))
                    continue
            log.info("relayer: reconciling %s from its receipt", hashes[-1])
            reports.append(self._settle(rtx_id, receipt))
        return reports

    def _known(self, hashes: list[str]) -> bool:
        for h in hashes:
            try:
                if self.w3.eth.get_transaction(h) is not None:
                    return True
            except Exception as exc:  # noqa: BLE001 - TransactionNotFound
                if _is_connection_error(exc):
                    raise
        return False

    def _settle_from_chain(self, rtx_id: int) -> RelayReport:
        """No version of the transaction can be mined any more (its account nonce went to another
        transaction): settle each batch from the device nonce state and the ledger's events."""
        with self.sessions() as session:
            rtx = session.get(RelayTransaction, rtx_id)
            from_block = rtx.sent_block
        head = self.w3.eth.block_number
        outcome = playbatch.BatchOutcome()
        step = self.config.log_scan_blocks
        topic = self.events.topic("RoyaltyLedger", "PlaysRecorded")
        for start in range(from_block, head + 1, step):
            logs = self.w3.eth.get_logs({"address": self.ledger_address, "fromBlock": start,
                                         "toBlock": min(start + step - 1, head), "topics": [[topic]]})
            found = playbatch.batch_outcome(e for e in map(self.events.decode, logs) if e is not None)
            outcome.applied.update(found.applied)
        applied = {key: (a.tx_hash, a.block_number) for key, a in outcome.applied.items()}
        with self.sessions.begin() as session:
            rtx = session.get(RelayTransaction, rtx_id)
            rtx.status = TX_DONE
            rows = list(session.scalars(select(PendingBatch).where(PendingBatch.relay_tx_id == rtx_id,
                                                                   PendingBatch.status == INFLIGHT)))
            report = RelayReport(rtx.hashes[-1], len(rows), sum(r.plays for r in rows), rtx.calldata_size)
            for row in rows:
                key = (row.device_id, row.nonce)
                if key in applied:
                    row.status, row.reason = CONFIRMED, None
                    row.confirmed_tx_hash, row.confirmed_block = applied[key]
                    report.confirmed += 1
                elif self.contract.functions.isNonceUsed(row.device_id, row.nonce).call():
                    row.status, row.reason = REJECTED, "NonceUsed"
                    report.rejected += 1
                else:
                    row.status, row.relay_tx_id = PENDING, None
                    report.repending += 1
        log.warning("relayer: %s settled from chain state: %d confirmed, %d rejected, %d back to pending",
                    report.tx_hash, report.confirmed, report.rejected, report.repending)
        return report

    # ------------------------------------------------------------------------- loop
    def run(self, stop=None, once: bool = False) -> list[RelayReport]:
        """Reconciles, then relays until `stop` (a threading.Event) is set. With `once`: until
        nothing is pending, raising on the first error, and returning the reports (tools, tests).
        Without it, errors of the node or the database are logged and retried after a pause
        (transactions left `sent` are reconciled first)."""
        from sqlalchemy.exc import OperationalError, InterfaceError

        reports: list[RelayReport] = []
        need_reconcile = True
        while stop is None or not stop.is_set():
            try:
                if need_reconcile:
                    done = self.reconcile()
                    if once:
                        reports += done
                    need_reconcile = False
                report = self.relay_once()
            except (RelayerError, OperationalError, InterfaceError, ConnectionError, TimeoutError) as exc:
                if once:
                    raise
                log.error("relayer: %s; retrying in %.0f s", exc, max(self.config.idle_sleep, 5.0))
                need_reconcile = True
                (stop.wait if stop is not None else time.sleep)(max(self.config.idle_sleep, 5.0))
                continue
            except Exception as exc:  # noqa: BLE001
                if once or not _is_connection_error(exc):
                    raise
                log.error("relayer: node unreachable (%s); retrying", exc)
                need_reconcile = True
                (stop.wait if stop is not None else time.sleep)(max(self.config.idle_sleep, 5.0))
                continue
            if report is not None:
                if once:
                    reports.append(report)
                continue
            if once:
                break
            (stop.wait if stop is not None else time.sleep)(self.config.idle_sleep)
        return reports


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))
