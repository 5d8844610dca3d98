"""Settlement: what becomes of a transaction's inflight batches, and the report of it.

The rules are pure functions over PendingBatch-like rows (no session, no web3), each returning
one :class:`Verdict` per row and the transaction's :class:`RelayReport`:

- :func:`settle_outcome`: the transaction was mined; its ``PlaysRecorded`` / ``BatchSkipped``
  events (a :class:`ledger.playbatch.BatchOutcome`) decide each batch,
- :func:`settle_revert`: the transaction reverted; every batch goes back to ``pending``,
- :func:`settle_from_chain`: no version of the transaction can be mined any more; the device
  nonce state and the ``PlaysRecorded`` events since it was signed decide each batch.

The thin database part next to them (:func:`settle_receipt`, :func:`settle_chain_state`,
:func:`abandon`) loads a transaction's inflight rows, applies the verdicts and marks the
transaction ``done``, each in one database transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from .. import playbatch
from ..events import DecodedEvent
from ..pending import CONFIRMED, INFLIGHT, PENDING, REJECTED, TX_DONE, PendingBatch, RelayTransaction, utcnow

log = logging.getLogger("ledger.relayer")  # the relayer's one logger, as before the split

INSUFFICIENT_ESCROW = "InsufficientEscrow"
#: A batch the contract skipped without an event: its device is unknown or its signature bad.
UNATTRIBUTABLE = "UnknownDeviceOrBadSignature"
NONCE_USED = "NonceUsed"

BatchKey = tuple[int, int]  # (device id, nonce)
Decoder = Callable[[Mapping[str, Any]], DecodedEvent | None]


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
    reasons: dict[str, int] = field(default_factory=dict)


class BatchRow(Protocol):
    """The fields of a pending batch that settlement reads and writes (PendingBatch has them)."""

    id: int
    nonce: int
    plays: int
    status: str
    reason: str | None
    relay_tx_id: int | None
    confirmed_tx_hash: str | None
    confirmed_block: int | None

    @property
    def device_id(self) -> int: ...


@dataclass(frozen=True)
class Verdict:
    """The new state of one inflight batch.

    ``confirmed``: applied at ``tx_hash`` in ``block`` (the reason is cleared). ``rejected``:
    refused for good with ``reason``. ``pending``: released from its transaction to be packed
    again; ``reason`` is recorded when given (``InsufficientEscrow`` delays the retry), else the
    row keeps the reason it had.
    """

    status: str
    reason: str | None = None
    tx_hash: str | None = None
    block: int | None = None


REPEND = Verdict(PENDING)


def _report(tx_hash: str, rows: Sequence[BatchRow], calldata: int, gas_used: int = 0) -> RelayReport:
    return RelayReport(tx_hash, len(rows), sum(r.plays for r in rows), calldata, gas_used=gas_used)


def settle_outcome(
    rows: Sequence[BatchRow], outcome: playbatch.BatchOutcome, tx_hash: str, block: int, calldata: int, gas_used: int
) -> tuple[list[Verdict], RelayReport]:
    """A mined transaction: in ``PlaysRecorded`` -> confirmed; skipped for ``InsufficientEscrow``
    -> pending; skipped for another reason -> rejected with it; in neither event -> rejected as
    ``UNATTRIBUTABLE`` (the contract skips a batch of an unknown device or with a bad signature
    without an event, since nobody can be held to it; ingest checks both, so this is rare)."""
    report = _report(tx_hash, rows, calldata, gas_used)
    verdicts = []
    for row in rows:
        key = (row.device_id, row.nonce)
        if key in outcome.applied:
            verdicts.append(Verdict(CONFIRMED, tx_hash=tx_hash, block=block))
            report.confirmed += 1
        elif key in outcome.skipped:
            reason = outcome.skipped[key]
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            if reason == INSUFFICIENT_ESCROW:
                verdicts.append(Verdict(PENDING, reason))
                report.repending += 1
            else:
                verdicts.append(Verdict(REJECTED, reason))
                report.rejected += 1
        else:
            log.error(
                "relayer: batch %s (device %s nonce %s) is in neither event of %s: unknown device or bad "
                "signature on chain",
                row.id,
                row.device_id,
                row.nonce,
                tx_hash,
            )
            verdicts.append(Verdict(REJECTED, UNATTRIBUTABLE))
            report.rejected += 1
            report.reasons[UNATTRIBUTABLE] = report.reasons.get(UNATTRIBUTABLE, 0) + 1
    return verdicts, report


def settle_revert(
    rows: Sequence[BatchRow], tx_hash: str, calldata: int, gas_used: int
) -> tuple[list[Verdict], RelayReport]:
    """A reverted transaction: every batch goes back to pending."""
    report = _report(tx_hash, rows, calldata, gas_used)
    report.reverted = True
    log.error("relayer: %s reverted; %d batches go back to pending", tx_hash, len(rows))
    report.repending = len(rows)
    return [REPEND for _ in rows], report


def settle_from_chain(
    rows: Sequence[BatchRow],
    applied: Mapping[BatchKey, tuple[str, int]],
    nonce_used: Callable[[int, int], bool],
    tx_hash: str,
    calldata: int,
) -> tuple[list[Verdict], RelayReport]:
    """No version of the transaction can be mined: applied (``applied`` maps (device id, nonce)
    to the tx hash and block of its ``PlaysRecorded``) -> confirmed; else its device nonce used
    (``nonce_used(device_id, nonce)``, asked only for batches not applied) -> rejected
    ``NonceUsed``; else -> pending."""
    report = _report(tx_hash, rows, calldata)
    verdicts = []
    for row in rows:
        key = (row.device_id, row.nonce)
        if key in applied:
            where_hash, where_block = applied[key]
            verdicts.append(Verdict(CONFIRMED, tx_hash=where_hash, block=where_block))
            report.confirmed += 1
        elif nonce_used(row.device_id, row.nonce):
            verdicts.append(Verdict(REJECTED, NONCE_USED))
            report.rejected += 1
        else:
            verdicts.append(REPEND)
            report.repending += 1
    return verdicts, report


def apply_verdict(row: BatchRow, verdict: Verdict) -> None:
    """Writes a verdict on its row (in memory; the caller's session persists it)."""
    if verdict.status == CONFIRMED:
        row.status, row.reason = CONFIRMED, None
        row.confirmed_tx_hash, row.confirmed_block = verdict.tx_hash, verdict.block
    elif verdict.status == REJECTED:
        row.status, row.reason = REJECTED, verdict.reason
    else:
        row.status, row.relay_tx_id = PENDING, None
        if verdict.reason is not None:
            row.reason = verdict.reason


# ----------------------------------------------------------------------------- database
def _inflight(session: Session, rtx_id: int) -> list[PendingBatch]:
    return list(
        session.scalars(select(PendingBatch).where(PendingBatch.relay_tx_id == rtx_id, PendingBatch.status == INFLIGHT))
    )


def _apply(rows: Iterable[PendingBatch], verdicts: Iterable[Verdict]) -> None:
    for row, verdict in zip(rows, verdicts, strict=True):
        apply_verdict(row, verdict)


def settle_receipt(
    sessions: sessionmaker[Session], rtx_id: int, receipt: Mapping[str, Any], decode: Decoder
) -> RelayReport:
    """Settles transaction ``rtx_id`` from its receipt (logs decoded by ``decode``), in one
    database transaction."""
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    block = int(receipt["blockNumber"])
    gas_used = int(receipt["gasUsed"])
    with sessions.begin() as session:
        rtx = session.get_one(RelayTransaction, rtx_id)
        rows = _inflight(session, rtx_id)
        rtx.status, rtx.mined_tx_hash, rtx.mined_block, rtx.gas_used = TX_DONE, tx_hash, block, gas_used
        if int(receipt["status"]) != 1:
            verdicts, report = settle_revert(rows, tx_hash, rtx.calldata_size, gas_used)
            _apply(rows, verdicts)
            return report
        outcome = playbatch.batch_outcome(e for e in map(decode, receipt["logs"]) if e is not None)
        verdicts, report = settle_outcome(rows, outcome, tx_hash, block, rtx.calldata_size, gas_used)
        _apply(rows, verdicts)
    log.info(
        "relayer: %s mined in block %d: %d confirmed, %d rejected %s, %d back to pending, gas %d",
        tx_hash,
        block,
        report.confirmed,
        report.rejected,
        report.reasons or "",
        report.repending,
        report.gas_used,
    )
    return report


def settle_chain_state(
    sessions: sessionmaker[Session],
    rtx_id: int,
    applied: Mapping[BatchKey, tuple[str, int]],
    nonce_used: Callable[[int, int], bool],
) -> RelayReport:
    """Settles transaction ``rtx_id`` from chain state (see :func:`settle_from_chain`), in one
    database transaction."""
    with sessions.begin() as session:
        rtx = session.get_one(RelayTransaction, rtx_id)
        rtx.status = TX_DONE
        rows = _inflight(session, rtx_id)
        verdicts, report = settle_from_chain(rows, applied, nonce_used, rtx.hashes[-1], rtx.calldata_size)
        _apply(rows, verdicts)
    log.warning(
        "relayer: %s settled from chain state: %d confirmed, %d rejected, %d back to pending",
        report.tx_hash,
        report.confirmed,
        report.rejected,
        report.repending,
    )
    return report


def abandon(sessions: sessionmaker[Session], rtx_id: int) -> None:
    """The node refused the transaction outright: nothing was broadcast, batches go back."""
    with sessions.begin() as session:
        rtx = session.get_one(RelayTransaction, rtx_id)
        rtx.status = TX_DONE
        session.execute(
            update(PendingBatch)
            .where(PendingBatch.relay_tx_id == rtx_id, PendingBatch.status == INFLIGHT)
            .values(status=PENDING, relay_tx_id=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
