"""The packer: which pending batches go into the next ``submitBatches`` transaction.

It owns the choice of candidates from the pending store (pending, and not an unpayable batch
waiting for its retry), fitting them under the input byte limit with
:func:`ledger.playbatch.plan_calls`, encoding them, and the gas each pack gets.

The gas: once a receipt in which every batch applied has been seen, the packer predicts the gas of
the next pack from it (:class:`GasModel`: the receipt's gasUsed per batch and per entry, the larger
of the two predictions, scaled by what the last estimate asked over what its transaction used,
as refunds make a transaction need more gas than it uses) and sizes the pack so that the
prediction stays under ``GAS_FILL`` of the cap; no ``eth_estimateGas`` (which executes the whole
call, several times on some nodes) is spent.
It estimates instead when there is no model yet, and for the next pack after a receipt that used
more gas than predicted, a transaction that reverted or ran out of gas, or one the node refused.
An out-of-gas transaction changes nothing on the chain: settlement puts its batches back to
pending and they go out again under an estimate. The estimate loop: too much gas shrinks the pack
(:func:`ledger.playbatch.shrink_for_gas`), a failing estimate halves it, a single batch that
reverts the call on its own is rejected (``Reverted``). Gas estimation is injected as a callable
(``data -> gas``, raising when the call would revert), so the packer needs no node.
An optional screen (:class:`ledger.relayer.unlicensed.UnlicensedAllowance`) holds back batches
that pay nobody once their licensee's daily allowance is spent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, cast

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .. import playbatch
from ..pending import PENDING, REJECTED, PendingBatch, utcnow
from .sender import is_connection_error
from .settlement import INSUFFICIENT_ESCROW
from .unlicensed import UNLICENSED_LIMIT

log = logging.getLogger("ledger.relayer")  # the relayer's one logger, as before the split

Estimator = Callable[[bytes], int]  # submitBatches data -> gas; raises when the call reverts
#: (session, candidates) -> (the candidates that may go out, how many were held back)
Screen = Callable[[Session, Sequence[PendingBatch]], tuple[list[PendingBatch], int]]
Pack = tuple[list[PendingBatch], bytes, int]  # (batches, submitBatches data, gas estimate)

#: The smallest encoded batch (one entry): the most batches one transaction could hold is
#: max_input_bytes // MIN_BATCH_SIZE + 1, so no more candidates than that are read.
MIN_BATCH_SIZE = playbatch.BATCH_HEADER_SIZE + playbatch.ENTRY_SIZE + playbatch.SIGNATURE_SIZE


#: The share of the gas cap a pack sized from the last gas per batch aims at (batches differ:
#: one that writes a fresh nonce word costs more).
GAS_FILL = 0.92


@dataclass(frozen=True)
class GasModel:
    """Gas per batch and per entry of the last receipt in which every batch applied."""

    per_batch: float
    per_entry: float

    @classmethod
    def of(cls, gas: int, batches: int, entries: int) -> GasModel:
        return cls(gas / max(1, batches), gas / max(1, entries))

    def predict(self, batches: int, entries: int) -> int:
        """The gas ``batches`` batches of ``entries`` entries in all should use (the larger of the
        two rates: bigger batches than last time are caught by the entries, smaller by the count)."""
        return math.ceil(max(batches * self.per_batch, entries * self.per_entry))


def entries_of(row: PendingBatch) -> int:
    return len(row.entries) // playbatch.ENTRY_SIZE


class PackLimits(Protocol):
    """The settings the packer reads (RelayerConfig has them)."""

    @property
    def gas_cap(self) -> int: ...

    @property
    def max_input_bytes(self) -> int: ...

    @property
    def escrow_retry_after(self) -> float: ...

    @property
    def unlicensed_retry_after(self) -> float: ...

    @property
    def partition(self) -> tuple[int, int]: ...


def queued(row: PendingBatch) -> playbatch.QueuedBatch:
    """A stored batch as the calldata planner sees it (the row is its ref)."""
    return playbatch.QueuedBatch(
        row.licensee_index,
        row.device_number,
        playbatch.SignedBatch(row.device, row.nonce, row.from_time, row.to_time, row.entries, row.signature),
        ref=row,
    )


def encode(rows: Sequence[PendingBatch]) -> bytes:
    """The submitBatches ``data`` of rows already in call order."""
    return playbatch.encode_call([queued(r) for r in rows])


class Packer:
    """Packs the pending store into transactions under ``limits``, estimating with ``estimate``."""

    def __init__(
        self,
        limits: PackLimits,
        estimate: Estimator,
        screen: Screen | None = None,
        horizon: Callable[[], int] | None = None,
    ):
        self.limits = limits
        self.estimate = estimate
        self.screen = screen
        #: the latest toTime a batch may have to apply in the block the estimate runs in (and in any
        #: later one); later batches wait in pending until the chain's clock reaches them
        self.horizon = horizon
        #: gas per batch of the last pack estimated under the cap: the next pack starts at what
        #: that predicts fits (each ``eth_estimateGas`` executes the whole call, several times on
        #: some nodes: a pack that fits the bytes but not the gas cost one estimate too many)
        self.gas_per_batch: float | None = None
        #: gas per batch and per entry seen in the last receipt where every batch applied
        self.model: GasModel | None = None
        #: the next pack is estimated, not predicted (no model yet, or the last prediction failed)
        self.must_estimate = True
        #: whether the last pack's gas was predicted (else estimated)
        self.predicted = False
        #: the last estimate over the gasUsed of its receipt: a transaction needs more gas than it
        #: ends up using (storage refunds are paid back after it ran, 1/64 stays with each call)
        self.need_ratio = 1.0

    def candidates(self, session: Session, limit: int) -> list[PendingBatch]:
        """Up to ``limit`` pending batches in (licensee index, device number, nonce) order; a
        batch skipped for InsufficientEscrow only ``escrow_retry_after`` seconds after it was,
        one held back for UnlicensedLimit only ``unlicensed_retry_after`` seconds after, one whose
        toTime is past the chain's clock + skew (``horizon``) only once the clock has moved on."""
        now = utcnow()
        escrow_before = now - timedelta(seconds=self.limits.escrow_retry_after)
        unlicensed_before = now - timedelta(seconds=self.limits.unlicensed_retry_after)
        stmt = (
            select(PendingBatch)
            .where(
                PendingBatch.status == PENDING,
                or_(
                    PendingBatch.reason.is_(None),
                    PendingBatch.reason.not_in((INSUFFICIENT_ESCROW, UNLICENSED_LIMIT)),
                    (PendingBatch.reason == INSUFFICIENT_ESCROW) & (PendingBatch.updated_at < escrow_before),
                    (PendingBatch.reason == UNLICENSED_LIMIT) & (PendingBatch.updated_at < unlicensed_before),
                ),
            )
            .order_by(PendingBatch.licensee_index, PendingBatch.device_number, PendingBatch.nonce)
            .limit(limit)
        )
        k, n = self.limits.partition
        if n > 1:
            stmt = stmt.where(PendingBatch.licensee_index % n == k)
        if self.horizon is not None:
            stmt = stmt.where(PendingBatch.to_time <= self.horizon())
        return list(session.scalars(stmt))

    def fit_bytes(self, rows: Sequence[PendingBatch]) -> list[PendingBatch]:
        """The first call's worth of rows (by licensee order) under max_input_bytes."""
        calls = playbatch.plan_calls([queued(r) for r in rows], self.limits.max_input_bytes)
        return [cast(PendingBatch, q.ref) for q in calls[0]] if calls else []

    def pack(self, session: Session) -> Pack:
        """(batches, submitBatches data, gas estimate) of the next transaction, or ([], b'', 0)."""
        cap_rows = self.limits.max_input_bytes // MIN_BATCH_SIZE + 1
        rows = self.fit_bytes(self.screened(session, cap_rows))
        self.predicted = False
        if rows and self.model is not None and not self.must_estimate:
            predicted = self.predict(rows)
            if predicted is not None:
                return predicted
        if self.gas_per_batch and len(rows) > 1:
            rows = rows[: max(1, int(self.limits.gas_cap * GAS_FILL / self.gas_per_batch))]
        while rows:
            data = encode(rows)
            try:
                gas = self.estimate(data)
            except Exception as exc:  # noqa: BLE001 - a revert (or an out-of-gas estimate) for this pack
                if is_connection_error(exc):
                    raise
                if len(rows) == 1:
                    log.error("relayer: batch %s reverts the call on its own (%s); rejecting it", rows[0].id, exc)
                    self.reject_unsendable(session, rows[0], "Reverted")
                    rows = self.fit_bytes(self.screened(session, cap_rows))
                    continue
                log.warning("relayer: estimate failed for %d batches (%s); halving", len(rows), exc)
                rows = rows[: len(rows) // 2]
                continue
            if gas <= self.limits.gas_cap:
                self.gas_per_batch = gas / len(rows)
                return rows, data, gas
            shrink = playbatch.shrink_for_gas(len(rows), gas, self.limits.gas_cap)
            log.info("relayer: %d batches need %d gas > cap %d; trying %d", len(rows), gas, self.limits.gas_cap, shrink)
            rows = rows[:shrink]
        return [], b"", 0

    def predict(self, rows: list[PendingBatch]) -> Pack | None:
        """The longest prefix of ``rows`` whose predicted gas is at most ``GAS_FILL`` of the cap,
        with that prediction; None when not even one batch fits (it is estimated then)."""
        assert self.model is not None
        budget = self.limits.gas_cap * GAS_FILL
        entries = n = 0
        for row in rows:
            if self.model.predict(n + 1, entries + entries_of(row)) > budget:
                break
            n += 1
            entries += entries_of(row)
        if n == 0:
            return None
        rows = rows[:n]
        self.predicted = True
        return rows, encode(rows), self.model.predict(n, entries)

    def observe(self, batches: int, entries: int, expected: int, gas_used: int, applied: bool, reverted: bool) -> None:
        """What the receipt of the last pack said: ``expected`` gas (predicted or estimated),
        ``gas_used`` by it, whether every batch applied, whether it reverted (out of gas
        included) or never got mined. A receipt where every batch applied becomes the model
        (its gasUsed times the last estimate's ratio to its gasUsed), one with skipped batches
        may only raise it; the next pack is estimated after a revert or a receipt that needed
        more than expected."""
        if reverted:
            self.must_estimate = True
            log.warning(
                "relayer: a transaction of %d batches reverted (gas used %d of %d expected); estimating the next pack",
                batches,
                gas_used,
                expected,
            )
            return
        if gas_used > 0:
            if not self.predicted:
                self.need_ratio = max(1.0, expected / gas_used)
            seen = GasModel.of(math.ceil(gas_used * self.need_ratio), batches, entries)
            if applied:
                self.model = seen
            elif self.model is not None:
                # skipped or rejected batches cost other gas than applied ones (a skip for
                # InsufficientEscrow more): such a receipt may raise the model, never lower it
                self.model = GasModel(
                    max(self.model.per_batch, seen.per_batch), max(self.model.per_entry, seen.per_entry)
                )
            if self.model is not None:
                self.gas_per_batch = self.model.per_batch
        if gas_used * self.need_ratio > expected:
            self.must_estimate = True
            log.info(
                "relayer: %d batches used %d gas, over the %d expected; estimating the next pack",
                batches,
                gas_used,
                expected,
            )
        elif self.model is not None:
            self.must_estimate = False

    def screened(self, session: Session, limit: int) -> list[PendingBatch]:
        """The candidates that pass the screen. A held batch is committed with its reason and
        left out of the next read, so a full read of held batches is followed by another."""
        while True:
            rows = self.candidates(session, limit)
            if self.screen is None:
                return rows
            kept, held = self.screen(session, rows)
            if kept or not held or len(rows) < limit:
                return kept

    @staticmethod
    def reject_unsendable(session: Session, row: PendingBatch, reason: str) -> None:
        """A batch that can never be sent is rejected with ``reason`` (committed at once)."""
        row.status, row.reason = REJECTED, reason
        session.commit()
