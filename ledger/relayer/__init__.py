"""The relayer: packs pending play batches into ``submitBatches`` transactions and settles them.

One relayer process per relayer key (``ledger relay``). Each round:

1. **Pack**: pending batches, sorted by (licensee index, device number, nonce), grouped by
   licensee, as many as fit in ``max_input_bytes`` of transaction input (default 131,072 - 512:
   a default geth node refuses transactions over 128 KiB into its mempool; the 512 bytes are
   left for the rest of the signed transaction) and under ``gas_cap`` gas (default 14,000,000).
   The gas is predicted from the last receipt in which every batch applied (its gasUsed per
   batch and per entry; the pack is cut to what the prediction fits under 92% of the cap), and
   checked with ``eth_estimateGas`` in the pending block only when there is no such receipt yet
   or after a transaction that used more than predicted, ran out of gas or reverted; too much
   gas shrinks an estimated pack and estimates again. The gas limit is the prediction plus
   ``predicted_margin`` (25%) or the estimate plus ``gas_margin`` (15%), at most the cap; an
   out-of-gas transaction applies nothing and its batches go back to pending (step 4). A batch
   whose toTime is past the pending block's timestamp + the contract's ``maxClockSkew()`` waits
   in pending until the chain's clock reaches it: estimated (or predicted) in an earlier block
   it would look skipped (cheap) and then apply in a later one, out of gas.
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

The package: :mod:`ledger.relayer.packer` does step 1, :mod:`ledger.relayer.sender` steps 2
and 3 (the signing, broadcasting and waiting), :mod:`ledger.relayer.settlement` step 4 and the
settling from chain state; :class:`Relayer` here composes them (recording, reconciling, the loop).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from eth_utils import to_checksum_address
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from .. import playbatch
from ..chain import Deployment
from ..config import DEFAULT_GAS_CAP, MAX_TX_BYTES
from ..errors import RelayerError
from ..pending import CONFIRMED, INFLIGHT, PENDING, TX_SENT, PendingBatch, RelayTransaction, utcnow
from . import packer, settlement
from .packer import Pack, Packer
from .sender import Sender, SqlTxVersions, is_connection_error
from .settlement import INSUFFICIENT_ESCROW, BatchKey, RelayReport
from .unlicensed import DEFAULT_PLAYS_PER_DAY, DEFAULT_RETRY_AFTER, UNLICENSED_LIMIT, LicenseBook, UnlicensedAllowance

if TYPE_CHECKING:
    import threading

    from eth_account.datastructures import SignedTransaction
    from eth_account.signers.local import LocalAccount
    from sqlalchemy import CursorResult
    from web3 import Web3
    from web3.types import TxParams, TxReceipt

__all__ = [
    "ENVELOPE_RESERVE",
    "INSUFFICIENT_ESCROW",
    "UNLICENSED_LIMIT",
    "RelayReport",
    "Relayer",
    "RelayerConfig",
    "input_size",
]

log = logging.getLogger(__name__)

ENVELOPE_RESERVE = 512  # signature, nonce, fees, gas, to, value, chain id, RLP headers
FIXED_INPUT = 4 + 32 + 32  # selector, offset of `data`, length of `data`


def input_size(data_len: int) -> int:
    """Bytes of `submitBatches(data)` calldata for `data` of this length (ABI-padded)."""
    return FIXED_INPUT + (data_len + 31) // 32 * 32


@dataclass
class RelayerConfig:
    """Settings of one relayer (`ledger relay` sets gas_cap, max_input_bytes and idle_sleep from its flags)."""

    gas_cap: int = DEFAULT_GAS_CAP
    max_input_bytes: int = MAX_TX_BYTES - ENVELOPE_RESERVE
    gas_margin: float = 0.15  # gas limit = estimate * (1 + margin), at most gas_cap
    #: gas limit = predicted gas * (1 + margin), at most gas_cap: a prediction from the last receipt
    #: is rougher than an estimate (a licensee whose escrow ran out makes batches cost ~20% more)
    predicted_margin: float = 0.25
    receipt_timeout: float = 600.0
    bump_after: float = 60.0  # seconds without a receipt before re-signing with higher fees
    poll: float = 0.05  # receipt polling
    idle_sleep: float = 1.0  # `run` sleeps this long when nothing is pending
    escrow_retry_after: float = 60.0  # seconds before an unpayable batch is packed again
    unlicensed_plays_per_day: int | None = DEFAULT_PLAYS_PER_DAY  # per licensee; None: no limit
    unlicensed_retry_after: float = DEFAULT_RETRY_AFTER  # seconds before a held batch is looked at again
    log_scan_blocks: int = 5000  # eth_getLogs range when settling from chain state
    finality_blocks: int = 64  # confirmed batches this close to the head are re-checked (reorgs)
    recheck_every: float = 10.0  # seconds between re-checks of recent confirmed batches
    #: (k, n): relay only licensees whose index % n == k, so n relayer keys share the pending store
    #: without packing the same batch; (0, 1) relays every licensee.
    partition: tuple[int, int] = (0, 1)


class Relayer:
    """Relays the pending store to the RoyaltyLedger of ``deployment`` as ``account``: a
    :class:`~ledger.relayer.packer.Packer` and a :class:`~ledger.relayer.sender.Sender` on one
    account, with :mod:`ledger.relayer.settlement` deciding what each receipt did."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        account: LocalAccount,
        sessions: Engine | sessionmaker[Session],
        config: RelayerConfig | None = None,
    ):
        self.w3 = w3
        self.deployment = deployment
        self.ledger_address = deployment.ledger.address
        self.events = deployment.event_decoder()
        self.account = account
        self.sessions = (
            sessions if isinstance(sessions, sessionmaker) else sessionmaker(sessions, expire_on_commit=False)
        )
        self.config = config or RelayerConfig()
        self.contract = w3.eth.contract(address=self.ledger_address, abi=deployment.ledger.abi)
        self.chain_id = int(w3.eth.chain_id)
        self.sender = Sender(
            w3, self.contract, self.ledger_address, account, self.chain_id, self.config, SqlTxVersions(self.sessions)
        )
        self.allowance = (
            None
            if self.config.unlicensed_plays_per_day is None
            else UnlicensedAllowance(LicenseBook(self.contract), self.config.unlicensed_plays_per_day)
        )
        self.packer = Packer(
            self.config,
            self.sender.estimate_gas,
            self.allowance.screen if self.allowance else None,
            horizon=self.sender.horizon,
        )

    encode = staticmethod(packer.encode)

    def pack(self, session: Session) -> Pack:
        """(batches, submitBatches data, gas estimate) of the next transaction, or ([], b'', 0)."""
        return self.packer.pack(session)

    # ------------------------------------------------------------------------- one transaction
    def relay_once(self) -> RelayReport | None:
        """Packs, records, sends, awaits and settles one transaction; None when nothing is pending."""
        with self.sessions() as session:
            rows, data, estimate = self.pack(session)
            if not rows:
                return None
            ids = [r.id for r in rows]
            plays = sum(r.plays for r in rows)
            entries = sum(packer.entries_of(r) for r in rows)
            session.commit()  # end the read; the write below is its own transaction
            margin = self.config.predicted_margin if self.packer.predicted else self.config.gas_margin
            gas = min(int(estimate * (1 + margin)) + 10_000, max(self.config.gas_cap, estimate))
            nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
            signed, tx = self.sender.sign(data, nonce, gas, self.sender.fees())
            tx_hash = "0x" + bytes(signed.hash).hex()
            rtx = self._record(session, ids, signed, tx, nonce, gas)
            rtx_id = rtx.id
        log.info(
            "relayer: sending %s: %d batches, %d plays, %d bytes, gas limit %d (%s %d)",
            tx_hash,
            len(ids),
            plays,
            rtx.calldata_size,
            gas,
            "predicted" if self.packer.predicted else "estimate",
            estimate,
        )
        if not self._broadcast(bytes(signed.raw_transaction)):
            self._abandon(rtx_id)
            self.packer.observe(len(ids), entries, estimate, 0, applied=False, reverted=True)
            return RelayReport(tx_hash, len(ids), plays, rtx.calldata_size, reverted=True, repending=len(ids))
        receipt = self._await(rtx_id)
        report = self._settle(rtx_id, receipt)
        report.plays = plays
        self.packer.observe(
            len(ids), entries, estimate, report.gas_used, applied=report.confirmed == len(ids), reverted=report.reverted
        )
        return report

    def _record(
        self, session: Session, ids: list[int], signed: SignedTransaction, tx: TxParams, nonce: int, gas: int
    ) -> RelayTransaction:
        """Writes the signed transaction and marks its batches inflight, in ONE database
        transaction, before anything is broadcast."""
        rtx = RelayTransaction(
            sender=self.account.address,
            tx_nonce=nonce,
            tx_hashes="0x" + bytes(signed.hash).hex(),
            raw_tx=bytes(signed.raw_transaction),
            gas_limit=gas,
            calldata_size=len(tx["data"]) // 2 - 1,
            batch_count=len(ids),
            sent_block=self.w3.eth.block_number,
            status=TX_SENT,
        )
        session.add(rtx)
        session.flush()
        moved = cast(
            "CursorResult[Any]",
            session.execute(
                update(PendingBatch)
                .where(PendingBatch.id.in_(ids), PendingBatch.status == PENDING)
                .values(status=INFLIGHT, relay_tx_id=rtx.id, attempts=PendingBatch.attempts + 1, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if moved != len(ids):
            session.rollback()
            raise RelayerError(
                f"{len(ids) - moved} batches changed state while packing; is a second "
                "relayer running with this database?"
            )
        if self.allowance is not None:
            self.allowance.record(session, ids)
        session.commit()  # recorded: from here a crash is reconciled from this row
        return rtx

    def _broadcast(self, raw: bytes) -> bool:
        return self.sender.broadcast(raw)

    def _await(self, rtx_id: int) -> TxReceipt:
        """Waits for a receipt of any version of the recorded transaction (see Sender.await_receipt)."""
        with self.sessions() as session:
            rtx = session.get_one(RelayTransaction, rtx_id)
            hashes, raw, tx_nonce, gas = rtx.hashes, rtx.raw_tx, rtx.tx_nonce, rtx.gas_limit
        return self.sender.await_receipt(rtx_id, hashes, raw, tx_nonce, gas)

    def _settle(self, rtx_id: int, receipt: TxReceipt) -> RelayReport:
        return settlement.settle_receipt(self.sessions, rtx_id, receipt, self.events.decode)

    def _abandon(self, rtx_id: int) -> None:
        settlement.abandon(self.sessions, rtx_id)

    # ------------------------------------------------------------------------- crash recovery
    def reconcile(self) -> list[RelayReport]:
        """Settles every transaction left `sent` (after a crash, or a timeout)."""
        with self.sessions() as session:
            open_ids = list(
                session.scalars(
                    select(RelayTransaction.id)
                    .where(RelayTransaction.status == TX_SENT, RelayTransaction.sender == self.account.address)
                    .order_by(RelayTransaction.tx_nonce)
                )
            )
        reports = []
        for rtx_id in open_ids:
            with self.sessions() as session:
                rtx = session.get_one(RelayTransaction, rtx_id)
                hashes, raw, sender, tx_nonce = rtx.hashes, rtx.raw_tx, rtx.sender, rtx.tx_nonce
            receipt = self.sender.receipt(hashes)
            if receipt is None and self._account_nonce(sender) < tx_nonce:
                # A nonce gap: the chain lost earlier transactions of ours (reorg, devnet restarted
                # older). This one cannot be mined before them; its batches go back to pending and
                # are packed again under fresh nonces (the contract applies a batch at most once).
                log.warning(
                    "relayer: reconciling %s: the chain is behind its account nonce %d; sending its batches again",
                    hashes[-1],
                    tx_nonce,
                )
                self._abandon(rtx_id)
                continue
            if receipt is None:
                if self.sender.known(hashes) or self._account_nonce(sender) <= tx_nonce:
                    log.warning("relayer: reconciling %s: not mined; broadcasting it again", hashes[-1])
                    if self._broadcast(raw):
                        receipt = self._await(rtx_id)
                    elif self._account_nonce(sender) <= tx_nonce:
                        self._abandon(rtx_id)  # refused outright and its nonce is free: nothing can mine it
                        continue
                if receipt is None:
                    reports.append(self._settle_from_chain(rtx_id))
                    continue
            log.info("relayer: reconciling %s from its receipt", hashes[-1])
            reports.append(self._settle(rtx_id, receipt))
        return reports

    def recheck_confirmed(self) -> int:
        """Confirmed batches within ``finality_blocks`` of the head (or above it: a chain that went
        backwards) whose transaction left the chain go back to pending, to be relayed again; their
        nonce is unused on the chain as it is now. A batch whose nonce the chain did use (its
        transaction mined again elsewhere) stays confirmed. Returns how many went back."""
        head = int(self.w3.eth.block_number)
        moved = 0
        with self.sessions.begin() as session:
            rows = list(
                session.scalars(
                    select(PendingBatch).where(
                        PendingBatch.status == CONFIRMED,
                        PendingBatch.confirmed_block >= head - self.config.finality_blocks,
                    )
                )
            )
            by_tx: dict[str, list[PendingBatch]] = {}
            for row in rows:
                by_tx.setdefault(row.confirmed_tx_hash or "", []).append(row)
            for tx_hash, batch_rows in by_tx.items():
                receipt = self.sender.receipt([tx_hash]) if tx_hash else None
                if receipt is not None and int(receipt["status"]) == 1:
                    for row in batch_rows:
                        row.confirmed_block = int(receipt["blockNumber"])  # it may have moved in a reorg
                    continue
                for row in batch_rows:
                    if self._nonce_used(row.device_id, row.nonce):
                        continue
                    row.status, row.reason, row.relay_tx_id = PENDING, "Reorged", None
                    row.confirmed_tx_hash = row.confirmed_block = None
                    row.updated_at = utcnow()
                    moved += 1
        if moved:
            log.warning("relayer: %d confirmed batches left the chain (reorg or reset); relaying them again", moved)
        return moved

    def _account_nonce(self, sender: str) -> int:
        """How many transactions of `sender` are mined (its next account nonce)."""
        return int(self.w3.eth.get_transaction_count(to_checksum_address(sender), "latest"))

    def _settle_from_chain(self, rtx_id: int) -> RelayReport:
        """No version of the transaction can be mined any more (its account nonce went to another
        transaction): settle each batch from the device nonce state and the ledger's events."""
        with self.sessions() as session:
            from_block = session.get_one(RelayTransaction, rtx_id).sent_block
        return settlement.settle_chain_state(self.sessions, rtx_id, self._applied_since(from_block), self._nonce_used)

    def _applied_since(self, from_block: int) -> dict[BatchKey, tuple[str, int]]:
        """(tx hash, block) of every batch in a ``PlaysRecorded`` event from ``from_block`` on."""
        head = self.w3.eth.block_number
        outcome = playbatch.BatchOutcome()
        step = self.config.log_scan_blocks
        topic = self.events.topic("RoyaltyLedger", "PlaysRecorded")
        for start in range(from_block, head + 1, step):
            logs = self.w3.eth.get_logs(
                {
                    "address": self.ledger_address,
                    "fromBlock": start,
                    "toBlock": min(start + step - 1, head),
                    "topics": [[topic]],
                }
            )
            found = playbatch.batch_outcome(e for e in map(self.events.decode, logs) if e is not None)
            outcome.applied.update(found.applied)
        return {key: (a.tx_hash, a.block_number) for key, a in outcome.applied.items()}

    def _nonce_used(self, device_id: int, nonce: int) -> bool:
        return bool(self.contract.functions.isNonceUsed(device_id, nonce).call())

    # ------------------------------------------------------------------------- loop
    def run(self, stop: threading.Event | None = None, once: bool = False) -> list[RelayReport]:
        """Reconciles, then relays until `stop` (a threading.Event) is set. With `once`: until
        nothing is pending, raising on the first error, and returning the reports (tools, tests).
        Without it, errors of the node or the database are logged and retried after a pause
        (transactions left `sent` are reconciled first)."""
        from sqlalchemy.exc import InterfaceError, OperationalError

        reports: list[RelayReport] = []
        need_reconcile = True
        last_recheck = 0.0
        while stop is None or not stop.is_set():
            try:
                if need_reconcile:
                    done = self.reconcile()
                    if once:
                        reports += done
                    need_reconcile = False
                if time.monotonic() - last_recheck >= self.config.recheck_every:
                    self.recheck_confirmed()
                    last_recheck = time.monotonic()
                report = self.relay_once()
            except (RelayerError, OperationalError, InterfaceError, ConnectionError, TimeoutError) as exc:
                if once:
                    raise
                log.error("relayer: %s; retrying in %.0f s", exc, max(self.config.idle_sleep, 5.0))
                need_reconcile = True
                (stop.wait if stop is not None else time.sleep)(max(self.config.idle_sleep, 5.0))
                continue
            except Exception as exc:  # noqa: BLE001
                if once or not is_connection_error(exc):
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
