"""Batches that pay nobody: a per-licensee daily allowance before the relayer spends gas on them.

A play batch whose entries are all unlicensed at its ``toTime`` (no METERED period and no FLAT
license of the licensee covers it) is recorded on chain as evidence of unlicensed use and charged
nothing. Anyone with a registered device could make the relayer pay gas for an unbounded stream
of such batches, so the relayer sends at most ``plays_per_day`` of these plays per licensee per
UTC day (``LEDGER_UNLICENSED_PLAYS_PER_DAY``). A batch over the allowance is not rejected: it
stays ``pending`` with the reason ``UnlicensedLimit`` and is looked at again after
``retry_after`` seconds, so it goes out once the licensee buys a license that covers it (a
license covers plays up to its expiry, so a late purchase still pays the artists) or with the
next day's allowance. The portal and ``/api/v1/health`` show such batches as waiting for a
license, not as a stalled relayer.

A batch with at least one licensed entry is never held back here.

Licenses come from the chain (``meteredPeriodsOf`` and ``licenseOf(.., FLAT)``), cached per
(licensee, work) for ``ttl`` seconds: the cached periods are exact until the licensee buys
again, and a purchase missed for ``ttl`` seconds only delays a batch by one retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import playbatch
from ..pending import PendingBatch, RelayUnlicensedUsage, utcnow

log = logging.getLogger(__name__)

UNLICENSED_LIMIT = "UnlicensedLimit"
DEFAULT_PLAYS_PER_DAY = 5_000
DEFAULT_RETRY_AFTER = 900.0  # seconds before a held batch is looked at again
FLAT = 0  # ILicensing.LicenseKind


def utc_day(ts: float) -> int:
    return int(ts // 86_400)


@dataclass(frozen=True)
class Coverage:
    """The latest ``toTime`` each of a licensee's licenses of one work covers (0: none)."""

    metered: int
    previous: int
    flat: int

    def covers(self, to_time: int) -> bool:
        return 0 < to_time <= max(self.metered, self.previous, self.flat)


class LicenseBook:
    """Licensees' licenses as the ledger contract reports them, cached for ``ttl`` seconds."""

    def __init__(self, contract: Any, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.contract = contract
        self.ttl = ttl
        self.clock = clock
        self._licensees: dict[int, str] = {}
        self._coverage: dict[tuple[int, int], tuple[float, Coverage]] = {}

    def licensee(self, licensee_index: int) -> str:
        address = self._licensees.get(licensee_index)
        if address is None:
            address = str(self.contract.functions.licenseeAt(licensee_index).call())
            self._licensees[licensee_index] = address  # an index never changes hands
        return address

    def coverage(self, licensee_index: int, work_id: int) -> Coverage:
        key = (licensee_index, work_id)
        cached = self._coverage.get(key)
        now = self.clock()
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        licensee = self.licensee(licensee_index)
        _rate, expiry, _prev_rate, prev_expiry = self.contract.functions.meteredPeriodsOf(licensee, work_id).call()
        _flat_rate, flat_expiry = self.contract.functions.licenseOf(licensee, work_id, FLAT).call()
        coverage = Coverage(int(expiry), int(prev_expiry), int(flat_expiry))
        self._coverage[key] = (now, coverage)
        return coverage

    def pays_nobody(self, row: PendingBatch) -> bool:
        """True when no entry of the batch is licensed at its toTime."""
        for work_id, _count in playbatch.decode_entries(row.entries):
            if self.coverage(row.licensee_index, work_id).covers(row.to_time):
                return False
        return True


class UnlicensedAllowance:
    """Screens packs: holds back batches that pay nobody once their licensee's day is spent.

    :meth:`screen` runs on the candidates of a pack; :meth:`record` adds the plays of the
    screened batches that went into a recorded transaction to the day's usage, in the same
    database transaction that marks them inflight.
    """

    def __init__(
        self,
        book: LicenseBook,
        plays_per_day: int = DEFAULT_PLAYS_PER_DAY,
        retry_after: float = DEFAULT_RETRY_AFTER,
        clock: Callable[[], float] = time.time,
    ):
        self.book = book
        self.plays_per_day = plays_per_day
        self.retry_after = retry_after
        self.clock = clock
        self._screened: dict[int, tuple[int, int]] = {}  # batch id -> (licensee index, plays)

    def _used(self, session: Session, licensee_index: int, day: int) -> int:
        plays = session.scalar(
            select(RelayUnlicensedUsage.plays).where(
                RelayUnlicensedUsage.licensee_index == licensee_index, RelayUnlicensedUsage.day == day
            )
        )
        return int(plays or 0)

    def screen(self, session: Session, rows: Sequence[PendingBatch]) -> tuple[list[PendingBatch], int]:
        """(the rows that may go out, how many were held back). Held rows are committed as
        pending with reason UnlicensedLimit."""
        day = utc_day(self.clock())
        used: dict[int, int] = {}
        kept: list[PendingBatch] = []
        held = 0
        self._screened.clear()
        for row in rows:
            if not self.book.pays_nobody(row):
                kept.append(row)
                continue
            index = row.licensee_index
            if index not in used:
                used[index] = self._used(session, index, day)
            if used[index] + row.plays > self.plays_per_day:
                row.reason, row.updated_at = UNLICENSED_LIMIT, utcnow()
                held += 1
                continue
            used[index] += row.plays
            self._screened[row.id] = (index, row.plays)
            kept.append(row)
        if held:
            session.commit()
            log.warning(
                "relayer: held back %d batches that pay nobody (licensees over %d unlicensed plays today)",
                held,
                self.plays_per_day,
            )
        return kept, held

    def record(self, session: Session, ids: Sequence[int]) -> None:
        """Adds the packed batches that pay nobody to today's usage (caller commits)."""
        day = utc_day(self.clock())
        add: dict[int, int] = {}
        for batch_id in ids:
            if batch_id in self._screened:
                index, plays = self._screened[batch_id]
                add[index] = add.get(index, 0) + plays
        for index, plays in add.items():
            usage = session.get(RelayUnlicensedUsage, (index, day))
            if usage is None:
                session.add(RelayUnlicensedUsage(licensee_index=index, day=day, plays=plays))
            else:
                usage.plays += plays
        self._screened.clear()
