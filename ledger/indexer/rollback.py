"""Rollback of the index to the nearest common ancestor of a reorg (or of a devnet gone backwards).

Finding the ancestor: the index keeps the hash of the blocks it read (``indexed_blocks``: each
range's first and last block and every block with an event) for the last ``max_depth`` blocks.
Walking down from the checkpoint, stored blocks are probed against the chain at exponentially
growing distances (1, 2, 4, 8... stored blocks down) until one still has its hash, then the gap is
bisected: the result is the newest stored block still on the chain. A block's hash commits to all
its ancestors, so every stored block below it is on the chain too, and every stored block above it
is not. Every block with a row has a stored hash, so no row lies between the ancestor and the first
block that left. ``None`` when no stored block within ``max_depth`` is on the chain: the caller then
rolls back to the deploy block.

Rolling back (:func:`roll_back`, inside the caller's transaction): the event rows above the ancestor
are deleted; the keyed rows and counters they fed are corrected by exactly their contributions:

- ``works``: plays, licensed plays, accrued (play amounts and license fees) and distributed minus
  the deleted rows' sums; owner, URI (title, ISWC) and split lock restored from the kept
  ``work_transfers``, ``work_uri_updates`` and ``works.registered_uri`` / ``split_locked_block``;
  works registered above the ancestor deleted;
- ``licensees``: escrow deposited / withdrawn / charged minus the deleted movements and batches;
- ``licenses``: the latest kept ``license_purchases`` row of each touched key (or none), fees minus
  the deleted fees;
- ``devices``: registered above the ancestor deleted; revoked above it un-revoked;
- ``payees`` and ``work_period_stats``: minus the deleted sums; a key left with no kept row that
  feeds it is deleted (a fresh index would not have it).

The result equals a fresh index of the chain up to the ancestor (tests compare every row). Indexes
written before migration 0510 may lack a value needed here: :class:`NeedsRebuild` is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, case, delete, exists, func, select, update
from web3.exceptions import BlockNotFound

from ..metadata import parse_metadata_uri
from ..models import IndexedBlock, IndexerCheckpoint, Payee, WorkPeriodStats
from .projection import (
    ANOMALIES,
    BATCH_SKIPS,
    DEVICES,
    DISTRIBUTIONS,
    ESCROW_MOVEMENTS,
    LICENSE_PURCHASES,
    LICENSEES,
    PAYEE_CREDITS,
    PLAY_BATCHES,
    SPLIT_SHARES,
    TERMS,
    TOKEN_TRANSFERS,
    WITHDRAWALS,
    WORK_TRANSFERS,
    WORK_URI_UPDATES,
    WORKS,
    ZERO_ADDRESS,
    table_of,
)

log = logging.getLogger("ledger.indexer")

BLOCKS = table_of(IndexedBlock)
PLAYS_TABLE = "plays"
STATS = table_of(WorkPeriodStats)
PAYEES = table_of(Payee)
LICENSES_TABLE = "licenses"

#: Tables of event rows, deleted above the ancestor.
EVENT_TABLES = (
    BATCH_SKIPS,
    PLAY_BATCHES,
    PAYEE_CREDITS,
    DISTRIBUTIONS,
    WITHDRAWALS,
    TOKEN_TRANSFERS,
    ESCROW_MOVEMENTS,
    LICENSE_PURCHASES,
    TERMS,
    SPLIT_SHARES,
    WORK_URI_UPDATES,
    WORK_TRANSFERS,
    ANOMALIES,
)


class NeedsRebuild(Exception):
    """The index lacks what a partial rollback needs (written before migration 0510)."""


@dataclass
class Ancestor:
    block_number: int
    block_hash: str
    probes: int  # blocks asked of the node to find it


def find_ancestor(
    conn: Connection, block_hash: Callable[[int], str], checkpoint: int, max_depth: int
) -> Ancestor | None:
    """The newest stored block at most ``max_depth`` below ``checkpoint`` whose hash the chain still has."""
    stored = conn.execute(
        select(BLOCKS.c.block_number, BLOCKS.c.block_hash)
        .where(BLOCKS.c.block_number <= checkpoint, BLOCKS.c.block_number >= checkpoint - max_depth)
        .order_by(BLOCKS.c.block_number.desc())
    ).all()
    probes = 0

    def on_chain(i: int) -> bool:
        nonlocal probes
        probes += 1
        number, expected = _int(stored[i][0]), stored[i][1]
        try:
            return bool(block_hash(number) == expected)
        except BlockNotFound:  # the chain is shorter than that now
            return False

    # Exponential probing down the stored blocks (index 0 = newest), then bisection of the gap.
    bad, step, good = -1, 1, None
    while True:
        i = min(bad + step, len(stored) - 1)
        if i <= bad:
            return None
        if on_chain(i):
            good = i
            break
        bad, step = i, step * 2
        if i == len(stored) - 1:
            return None
    while good - bad > 1:  # invariant: stored[bad] left the chain (or bad == -1), stored[good] is on it
        mid = (bad + good) // 2
        if on_chain(mid):
            good = mid
        else:
            bad = mid
    number, hash_ = stored[good]
    return Ancestor(_int(number), str(hash_), probes)


def _int(value: Any) -> int:
    return int(value or 0)


def roll_back(conn: Connection, ancestor: int, ancestor_hash: str | None) -> dict[str, int]:
    """Deletes every row above block ``ancestor`` and corrects the counters they fed; moves the
    checkpoint to the ancestor. Runs in the caller's transaction. Returns rows deleted per table."""
    a = ancestor
    plays = _plays_table(conn)
    _check_restorable(conn, a)
    _correct_works(conn, a, plays)
    _correct_licensees(conn, a)
    _correct_licenses(conn, a)
    _correct_devices(conn, a)
    _correct_payees(conn, a)
    _correct_stats(conn, a, plays)
    deleted: dict[str, int] = {}
    for table in (plays, *EVENT_TABLES, BLOCKS):
        deleted[table.name] = conn.execute(delete(table).where(table.c.block_number > a)).rowcount
    deleted["works"] = conn.execute(delete(WORKS).where(WORKS.c.registered_block > a)).rowcount
    deleted["licensees"] = conn.execute(delete(LICENSEES).where(LICENSEES.c.registered_block > a)).rowcount
    deleted["devices"] = conn.execute(delete(DEVICES).where(DEVICES.c.registered_block > a)).rowcount
    cp = table_of(IndexerCheckpoint)
    conn.execute(update(cp).values(block_number=a, block_hash=ancestor_hash))
    return deleted


def _plays_table(conn: Connection) -> Table:
    from ..models import Play

    return table_of(Play)


def _check_restorable(conn: Connection, a: int) -> None:
    w, u, lp = WORKS, WORK_URI_UPDATES, LICENSE_PURCHASES
    if conn.execute(select(w.c.work_id).where(w.c.split_locked, w.c.split_locked_block.is_(None)).limit(1)).first():
        raise NeedsRebuild("a locked split without its block (indexed before migration 0510)")
    touched = select(u.c.work_id).where(u.c.block_number > a)
    if conn.execute(select(w.c.work_id).where(w.c.work_id.in_(touched), w.c.registered_uri.is_(None)).limit(1)).first():
        raise NeedsRebuild("a work without its registration URI (indexed before migration 0510)")
    if conn.execute(select(lp.c.id).where(lp.c.block_number <= a, lp.c.prev_expiry.is_(None)).limit(1)).first():
        raise NeedsRebuild("a license purchase without its previous period (indexed before migration 0510)")


def _subtract(conn: Connection, table: Table, key: str, deltas: dict[Any, dict[str, int]]) -> None:
    """UPDATE table SET c = c - delta WHERE key = k, in one executemany per set of columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for k, values in deltas.items():
        cols = tuple(sorted(c for c, v in values.items() if v))
        if cols:
            groups.setdefault(cols, []).append({"_key": k, **{"_d_" + c: values[c] for c in cols}})
    for cols, rows in groups.items():
        stmt = (
            update(table)
            .where(table.c[key] == bindparam("_key"))
            .values({c: table.c[c] - bindparam("_d_" + c) for c in cols})
        )
        conn.execute(stmt, rows)


def _latest_kept(conn: Connection, table: Table, column: Any, a: int, work_ids: set[int]) -> dict[int, Any]:
    """``column`` of each work's latest row at or below block ``a`` (by block, then log index), for
    the works in ``work_ids``: one query (a window function), not one per work."""
    if not work_ids:
        return {}
    rank = (
        func.row_number()
        .over(partition_by=table.c.work_id, order_by=(table.c.block_number.desc(), table.c.log_index.desc()))
        .label("rank")
    )
    ranked = (
        select(table.c.work_id, column.label("value"), rank)
        .where(table.c.work_id.in_(sorted(work_ids)), table.c.block_number <= a)
        .subquery()
    )
    rows = conn.execute(select(ranked.c.work_id, ranked.c.value).where(ranked.c.rank == 1))
    return {_int(work_id): value for work_id, value in rows}


def _correct_works(conn: Connection, a: int, plays: Table) -> None:
    w = WORKS
    deltas: dict[int, dict[str, int]] = {}

    def add(work_id: int, **values: int) -> None:
        d = deltas.setdefault(work_id, {"plays": 0, "licensed_plays": 0, "accrued": 0, "distributed": 0})
        for c, v in values.items():
            d[c] += v

    p = plays
    licensed = func.sum(case((p.c.licensed, p.c.count), else_=0))
    for work_id, count, lic, amount in conn.execute(
        select(p.c.work_id, func.sum(p.c.count), licensed, func.sum(p.c.amount))
        .where(p.c.block_number > a)
        .group_by(p.c.work_id)
    ):
        add(_int(work_id), plays=_int(count), licensed_plays=_int(lic), accrued=_int(amount))
    lp = LICENSE_PURCHASES
    for work_id, fees in conn.execute(
        select(lp.c.work_id, func.sum(lp.c.fee)).where(lp.c.block_number > a).group_by(lp.c.work_id)
    ):
        add(_int(work_id), accrued=_int(fees))
    d = DISTRIBUTIONS
    for work_id, amount in conn.execute(
        select(d.c.work_id, func.sum(d.c.amount)).where(d.c.block_number > a).group_by(d.c.work_id)
    ):
        add(_int(work_id), distributed=_int(amount))
    _subtract(conn, w, "work_id", deltas)

    # Owner: the latest kept transfer (the mint included), else the registrant.
    t = WORK_TRANSFERS
    moved: set[int] = set(
        conn.execute(
            select(t.c.work_id).where(t.c.block_number > a, t.c.from_address != ZERO_ADDRESS).distinct()
        ).scalars()
    )
    kept_owner = _latest_kept(conn, t, t.c.to_address, a, moved)
    for work_id in moved:
        last = kept_owner.get(work_id)
        owner = last if last is not None else w.c.registrant
        conn.execute(update(w).where(w.c.work_id == work_id).values(owner=owner))

    # URI, title, ISWC: the latest kept update, else the registration's.
    u = WORK_URI_UPDATES
    updated: set[int] = set(conn.execute(select(u.c.work_id).where(u.c.block_number > a).distinct()).scalars())
    kept_uri = _latest_kept(conn, u, u.c.uri, a, updated)
    for work_id in updated:
        uri = kept_uri.get(work_id)
        if uri is None:
            uri = conn.execute(select(w.c.registered_uri).where(w.c.work_id == work_id)).scalar()
        if uri is None:
            continue  # registered above the ancestor: deleted below
        meta = parse_metadata_uri(uri)
        conn.execute(update(w).where(w.c.work_id == work_id).values(uri=uri, title=meta.title, iswc=meta.iswc))

    conn.execute(update(w).where(w.c.split_locked_block > a).values(split_locked=False, split_locked_block=None))


def _correct_licensees(conn: Connection, a: int) -> None:
    le, m, b = LICENSEES, ESCROW_MOVEMENTS, PLAY_BATCHES
    index_of = {addr: i for i, addr in conn.execute(select(le.c.licensee_index, le.c.address))}
    deltas: dict[int, dict[str, int]] = {}

    def add(index: int, column: str, amount: int) -> None:
        d = deltas.setdefault(index, {"escrow_deposited": 0, "escrow_withdrawn": 0, "escrow_charged": 0})
        d[column] += amount

    for licensee, direction, amount in conn.execute(
        select(m.c.licensee, m.c.direction, func.sum(m.c.amount))
        .where(m.c.block_number > a)
        .group_by(m.c.licensee, m.c.direction)
    ):
        if licensee in index_of:
            add(
                _int(index_of[licensee]),
                "escrow_deposited" if direction == "deposit" else "escrow_withdrawn",
                _int(amount),
            )
    for index, charged in conn.execute(
        select(b.c.licensee_index, func.sum(b.c.charged)).where(b.c.block_number > a).group_by(b.c.licensee_index)
    ):
        add(_int(index), "escrow_charged", _int(charged))
    _subtract(conn, le, "licensee_index", deltas)


def _correct_licenses(conn: Connection, a: int) -> None:
    from ..models import License

    lic, lp = table_of(License), LICENSE_PURCHASES
    touched = conn.execute(
        select(lp.c.licensee, lp.c.work_id, lp.c.kind, func.sum(lp.c.fee))
        .where(lp.c.block_number > a)
        .group_by(lp.c.licensee, lp.c.work_id, lp.c.kind)
    ).all()
    for licensee, work_id, kind, fees in touched:
        key = and_(lic.c.licensee == licensee, lic.c.work_id == work_id, lic.c.kind == kind)
        last = conn.execute(
            select(lp.c.rate_per_play, lp.c.expiry, lp.c.prev_rate_per_play, lp.c.prev_expiry, lp.c.block_number)
            .where(lp.c.licensee == licensee, lp.c.work_id == work_id, lp.c.kind == kind, lp.c.block_number <= a)
            .order_by(lp.c.block_number.desc(), lp.c.log_index.desc())
            .limit(1)
        ).first()
        if last is None:
            conn.execute(delete(lic).where(key))
            continue
        conn.execute(
            update(lic)
            .where(key)
            .values(
                rate_per_play=last.rate_per_play,
                expiry=last.expiry,
                prev_rate_per_play=last.prev_rate_per_play,
                prev_expiry=last.prev_expiry,
                updated_block=last.block_number,
                fees_paid=lic.c.fees_paid - _int(fees),
            )
        )


def _correct_devices(conn: Connection, a: int) -> None:
    d = DEVICES
    conn.execute(update(d).where(d.c.revoked_block > a).values(revoked=False, revoked_block=None, revoked_at=None))


def _correct_payees(conn: Connection, a: int) -> None:
    pc, wd = PAYEE_CREDITS, WITHDRAWALS
    deltas: dict[str, dict[str, int]] = {}
    for payee, amount in conn.execute(
        select(pc.c.payee, func.sum(pc.c.amount)).where(pc.c.block_number > a).group_by(pc.c.payee)
    ):
        deltas.setdefault(str(payee), {"credited": 0, "withdrawn": 0})["credited"] += _int(amount)
    for payee, amount in conn.execute(
        select(wd.c.payee, func.sum(wd.c.amount)).where(wd.c.block_number > a).group_by(wd.c.payee)
    ):
        deltas.setdefault(str(payee), {"credited": 0, "withdrawn": 0})["withdrawn"] += _int(amount)
    _subtract(conn, PAYEES, "address", deltas)
    for payee in deltas:  # a payee row exists when a credit or a withdrawal names it
        kept = conn.execute(
            select(
                exists().where(pc.c.payee == payee, pc.c.block_number <= a)
                | exists().where(wd.c.payee == payee, wd.c.block_number <= a)
            )
        ).scalar()
        if not kept:
            conn.execute(delete(PAYEES).where(PAYEES.c.address == payee))


def _correct_stats(conn: Connection, a: int, plays: Table) -> None:
    p, lp, s = plays, LICENSE_PURCHASES, STATS
    deltas: dict[tuple[int, int, str], dict[str, int]] = {}

    def add(key: tuple[int, int, str], **values: int) -> None:
        d = deltas.setdefault(key, {"plays": 0, "licensed_plays": 0, "play_gross": 0, "fee_gross": 0})
        for c, v in values.items():
            d[c] += v

    licensed = func.sum(case((p.c.licensed, p.c.count), else_=0))
    for work_id, period, territory, count, lic, amount in conn.execute(
        select(p.c.work_id, p.c.period, p.c.territory, func.sum(p.c.count), licensed, func.sum(p.c.amount))
        .where(p.c.block_number > a)
        .group_by(p.c.work_id, p.c.period, p.c.territory)
    ):
        add(
            (_int(work_id), _int(period), str(territory)),
            plays=_int(count),
            licensed_plays=_int(lic),
            play_gross=_int(amount),
        )
    for work_id, period, fees in conn.execute(
        select(lp.c.work_id, lp.c.period, func.sum(lp.c.fee))
        .where(lp.c.block_number > a, lp.c.fee > 0)
        .group_by(lp.c.work_id, lp.c.period)
    ):
        add((_int(work_id), _int(period), ""), fee_gross=_int(fees))
    if not deltas:
        return
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (work_id, period, territory), values in deltas.items():
        cols = tuple(sorted(c for c, v in values.items() if v))
        if cols:
            groups.setdefault(cols, []).append(
                {"_w": work_id, "_p": period, "_t": territory, **{"_d_" + c: values[c] for c in cols}}
            )
    key = and_(s.c.work_id == bindparam("_w"), s.c.period == bindparam("_p"), s.c.territory == bindparam("_t"))
    for cols, rows in groups.items():
        conn.execute(update(s).where(key).values({c: s.c[c] - bindparam("_d_" + c) for c in cols}), rows)
    for work_id, period, territory in deltas:  # the key exists when a kept play row or fee feeds it
        kept: Any = exists().where(
            p.c.work_id == work_id, p.c.period == period, p.c.territory == territory, p.c.block_number <= a
        )
        if territory == "":
            kept = kept | exists().where(
                lp.c.work_id == work_id, lp.c.period == period, lp.c.fee > 0, lp.c.block_number <= a
            )
        if not conn.execute(select(kept)).scalar():
            conn.execute(delete(s).where(s.c.work_id == work_id, s.c.period == period, s.c.territory == territory))


__all__ = ["Ancestor", "NeedsRebuild", "find_ancestor", "roll_back"]
