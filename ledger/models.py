"""SQLAlchemy 2.0 models of the index (Alembic owns the schema: ledger/migrations).

Everything here except ``indexer_checkpoint`` is derived from contract events and can be
rebuilt from the chain at any time (``ledger index --rebuild``). Conventions:

- Amounts are token units as exact integers: ``NUMERIC(78,0)`` (any uint256) on PostgreSQL.
  SQLite stores them as 64-bit integers; a value that does not fit raises instead of turning
  into a float (see :class:`Amount`).
- Addresses are EIP-55 checksummed strings; ISRCs 12-character strings.
- ``period`` is the UTC month of the block that recorded the event, as ``YYYYMM`` (202611).
- Event rows carry ``block_number``, ``log_index`` and ``tx_hash``. A log index is unique
  within a block, so ``(block_number, log_index[, part])`` is the unique key that makes a
  second write of the same event fail loudly instead of counting it twice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, MetaData, Numeric, SmallInteger, String, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

SQLITE_INT_MAX = 2**63 - 1

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class _SqliteExactNumeric(Numeric[Decimal]):
    """NUMERIC(78,0) on SQLite whose values come back as the integers SQLite stored."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class Amount(TypeDecorator[int]):
    """An exact integer amount: NUMERIC(78,0) in the database, ``int`` in Python."""

    impl = Numeric(78, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # SQLite: NUMERIC affinity keeps integers exact, but SQLAlchemy's Numeric result
        # processing would pass them through float; read them as plain integers instead.
        if dialect.name == "sqlite":
            return _SqliteExactNumeric(78, 0)
        return dialect.type_descriptor(Numeric(78, 0))

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | Decimal | None:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("amounts are integers, never floats")
        value = int(value)
        if dialect.name == "sqlite" and not -SQLITE_INT_MAX <= value <= SQLITE_INT_MAX:
            raise OverflowError(f"amount {value} does not fit SQLite's 64-bit integers; use PostgreSQL")
        return value if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, float):  # SQLite only gives floats for values that were never ours
            raise TypeError(f"amount {value!r} came back as a float")
        return int(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class EventMixin:
    block_number: Mapped[int] = mapped_column(BigInteger)
    log_index: Mapped[int] = mapped_column(Integer)
    tx_hash: Mapped[str] = mapped_column(String(66))
    timestamp: Mapped[int] = mapped_column(BigInteger)  # unix seconds of the block


# ----------------------------------------------------------------------------- indexer state


class IndexerCheckpoint(Base):
    """Where the indexer stopped: the last block fully written. One row per deployment."""

    __tablename__ = "indexer_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    ledger_address: Mapped[str] = mapped_column(String(42))
    deploy_block: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)  # last block written (deploy_block - 1 at start)
    block_hash: Mapped[str | None] = mapped_column(String(66))
    updated_at: Mapped[int] = mapped_column(BigInteger)  # unix seconds, wall clock


class IndexedBlock(Base):
    """The hash of a block the index read (each range's first and last block and every block with
    an event), kept for the recent blocks: a reorg is rolled back to the newest of them still on
    the chain (the nearest common ancestor) instead of the deploy block."""

    __tablename__ = "indexed_blocks"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    block_hash: Mapped[str] = mapped_column(String(66))


# ----------------------------------------------------------------------------- works


class Work(Base):
    """A work (ERC-721 token) with its metadata and running totals."""

    __tablename__ = "works"

    work_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(String(42), index=True)
    registrant: Mapped[str] = mapped_column(String(42))
    isrc: Mapped[str | None] = mapped_column(String(12), unique=True)
    iswc: Mapped[str | None] = mapped_column(String(15))
    title: Mapped[str | None] = mapped_column(String(500))
    uri: Mapped[str] = mapped_column(String)
    registered_block: Mapped[int] = mapped_column(BigInteger)
    registered_at: Mapped[int] = mapped_column(BigInteger)
    split_locked: Mapped[bool] = mapped_column(Boolean, default=False)
    split_locked_block: Mapped[int | None] = mapped_column(BigInteger)  # block of SplitLocked (for rollbacks)
    registered_uri: Mapped[str | None] = mapped_column(String)  # the URI of WorkRegistered (for rollbacks)
    plays: Mapped[int] = mapped_column(BigInteger, default=0)  # all reported plays
    licensed_plays: Mapped[int] = mapped_column(BigInteger, default=0)  # == chain playsOf(workId)
    accrued: Mapped[int] = mapped_column(Amount, default=0)  # fees + play charges, all time
    distributed: Mapped[int] = mapped_column(Amount, default=0)  # accrued - distributed == accruedOf


class WorkTransfer(EventMixin, Base):
    """ERC-721 Transfer of a work (the mint included)."""

    __tablename__ = "work_transfers"
    __table_args__ = (UniqueConstraint("block_number", "log_index"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    work_id: Mapped[int] = mapped_column(BigInteger, index=True)
    from_address: Mapped[str] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))


class WorkUriUpdate(EventMixin, Base):
    __tablename__ = "work_uri_updates"
    __table_args__ = (UniqueConstraint("block_number", "log_index"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    work_id: Mapped[int] = mapped_column(BigInteger, index=True)
    uri: Mapped[str] = mapped_column(String)


class SplitShare(EventMixin, Base):
    """One payee of one SplitSet event: the split history of every work."""

    __tablename__ = "split_shares"
    __table_args__ = (
        UniqueConstraint("block_number", "log_index", "position"),
        Index(None, "payee", "work_id"),
        Index(None, "work_id", "block_number", "log_index"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    work_id: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(SmallInteger)  # 0 = first payee (gets the rounding remainder)
    payee: Mapped[str] = mapped_column(String(42))
    bps: Mapped[int] = mapped_column(Integer)


class Terms(EventMixin, Base):
    """TermsSet events; the current terms of (work, kind) are the latest row."""

    __tablename__ = "terms"
    __table_args__ = (UniqueConstraint("block_number", "log_index"), Index(None, "work_id", "kind", "block_number"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    work_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[int] = mapped_column(SmallInteger)  # 0 FLAT, 1 METERED
    fee: Mapped[int] = mapped_column(Amount)
    rate_per_play: Mapped[int] = mapped_column(BigInteger)
    duration: Mapped[int] = mapped_column(BigInteger)
    offered: Mapped[bool] = mapped_column(Boolean)


# ----------------------------------------------------------------------------- licensees


class Licensee(Base):
    """A licensee, its index and its escrow (deposited - withdrawn - charged == escrowOf).

    The chain gives an index on the first deposit, METERED license or device; a buyer of FLAT
    licenses only has none and appears in ``licenses`` / ``license_purchases`` alone.
    """

    __tablename__ = "licensees"

    licensee_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    address: Mapped[str] = mapped_column(String(42), unique=True)
    registered_block: Mapped[int] = mapped_column(BigInteger)
    escrow_deposited: Mapped[int] = mapped_column(Amount, default=0)
    escrow_withdrawn: Mapped[int] = mapped_column(Amount, default=0)
    escrow_charged: Mapped[int] = mapped_column(Amount, default=0)


class License(Base):
    """The current state of a license (licensee, work, kind): the latest LicenseBought. A METERED
    license keeps the period before it too (``prev_*``): plays are charged at the rate of the
    period their batch ended in."""

    __tablename__ = "licenses"

    licensee: Mapped[str] = mapped_column(String(42), primary_key=True)
    work_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    rate_per_play: Mapped[int] = mapped_column(BigInteger)
    expiry: Mapped[int] = mapped_column(BigInteger)
    prev_rate_per_play: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    prev_expiry: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    fees_paid: Mapped[int] = mapped_column(Amount)
    updated_block: Mapped[int] = mapped_column(BigInteger)


class LicensePurchase(EventMixin, Base):
    """LicenseBought events. The fee accrued to the work."""

    __tablename__ = "license_purchases"
    __table_args__ = (
        UniqueConstraint("block_number", "log_index"),
        Index(None, "work_id", "period"),
        Index(None, "licensee"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    licensee: Mapped[str] = mapped_column(String(42))
    work_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[int] = mapped_column(SmallInteger)
    fee: Mapped[int] = mapped_column(Amount)
    rate_per_play: Mapped[int] = mapped_column(BigInteger)
    expiry: Mapped[int] = mapped_column(BigInteger)
    prev_rate_per_play: Mapped[int | None] = mapped_column(BigInteger)  # the event's previous period
    prev_expiry: Mapped[int | None] = mapped_column(BigInteger)
    period: Mapped[int] = mapped_column(Integer)


class EscrowMovement(EventMixin, Base):
    """EscrowDeposited (direction 'deposit', counterparty = payer) and EscrowWithdrawn
    (direction 'withdraw', counterparty = recipient). Play charges are in play_batches."""

    __tablename__ = "escrow_movements"
    __table_args__ = (UniqueConstraint("block_number", "log_index"), Index(None, "licensee"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    licensee: Mapped[str] = mapped_column(String(42))
    counterparty: Mapped[str] = mapped_column(String(42))
    direction: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(Amount)


class Device(Base):
    __tablename__ = "devices"

    device_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    address: Mapped[str] = mapped_column(String(42), index=True)  # a revoked key may come back under a new id
    licensee: Mapped[str] = mapped_column(String(42), index=True)
    territory: Mapped[str] = mapped_column(String(2))
    registered_block: Mapped[int] = mapped_column(BigInteger)
    registered_at: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_block: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)  # batches ending after it are not chargeable


# ----------------------------------------------------------------------------- plays


class PlayBatch(EventMixin, Base):
    """One applied batch of a PlaysRecorded event (``batch_index`` = its place in the event)."""

    __tablename__ = "play_batches"
    __table_args__ = (UniqueConstraint("block_number", "log_index", "batch_index"), Index(None, "device_id", "nonce"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch_index: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[int] = mapped_column(BigInteger)
    licensee_index: Mapped[int] = mapped_column(BigInteger)
    nonce: Mapped[int] = mapped_column(BigInteger)
    from_time: Mapped[int] = mapped_column(BigInteger)
    to_time: Mapped[int] = mapped_column(BigInteger)
    charged: Mapped[int] = mapped_column(Amount)
    entries: Mapped[int] = mapped_column(Integer)
    plays: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[int] = mapped_column(Integer)


class Play(Base):
    """One entry of one applied batch: plays of one work. The big table.

    ``rate`` and ``amount`` are 0 for unlicensed plays. Statements read ``work_period_stats``,
    not this table; keep its indexes few so bulk loads stay fast.
    """

    __tablename__ = "plays"
    __table_args__ = (Index(None, "work_id", "period"),)

    # The primary key is the natural one (an entry's place in its event): no extra index.
    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    batch_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    work_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    device_id: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    licensed: Mapped[bool] = mapped_column(Boolean)
    rate: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(Amount)
    territory: Mapped[str] = mapped_column(String(2))
    period: Mapped[int] = mapped_column(Integer)


class BatchSkip(EventMixin, Base):
    """BatchSkipped events: batches the contract did not apply, with the reason."""

    __tablename__ = "batch_skips"
    __table_args__ = (UniqueConstraint("block_number", "log_index"), Index(None, "device_id", "nonce"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[int] = mapped_column(BigInteger)
    nonce: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))


class WorkPeriodStats(Base):
    """Pre-aggregated accruals per work, month and territory: what statements read.

    Play rows go to the device's territory; license fees, which have no territory, to ''.
    gross = play_gross + fee_gross.
    """

    __tablename__ = "work_period_stats"
    # A month's statement reads one month's rows of the payee's works (migration 0500).
    __table_args__ = (Index(None, "period", "work_id"),)

    work_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    period: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    territory: Mapped[str] = mapped_column(String(2), primary_key=True)
    plays: Mapped[int] = mapped_column(BigInteger, default=0)
    licensed_plays: Mapped[int] = mapped_column(BigInteger, default=0)
    play_gross: Mapped[int] = mapped_column(Amount, default=0)
    fee_gross: Mapped[int] = mapped_column(Amount, default=0)


# ----------------------------------------------------------------------------- payouts


class Distribution(EventMixin, Base):
    __tablename__ = "distributions"
    __table_args__ = (UniqueConstraint("block_number", "log_index"), Index(None, "work_id", "period"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    work_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(Amount)
    period: Mapped[int] = mapped_column(Integer)


class PayeeCredit(EventMixin, Base):
    """One payee's part of one Distributed event, by the split in force (chain rounding)."""

    __tablename__ = "payee_credits"
    __table_args__ = (
        UniqueConstraint("block_number", "log_index", "position"),
        Index(None, "payee", "period", "work_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    work_id: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(SmallInteger)
    payee: Mapped[str] = mapped_column(String(42))
    bps: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Amount)
    period: Mapped[int] = mapped_column(Integer)


class Withdrawal(EventMixin, Base):
    __tablename__ = "withdrawals"
    __table_args__ = (UniqueConstraint("block_number", "log_index"), Index(None, "payee"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    payee: Mapped[str] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(Amount)


class Payee(Base):
    """Running totals per payee: credited - withdrawn == chain balanceOf(payee)."""

    __tablename__ = "payees"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    credited: Mapped[int] = mapped_column(Amount, default=0)
    withdrawn: Mapped[int] = mapped_column(Amount, default=0)


class TokenTransfer(EventMixin, Base):
    """Settlement-token transfers into or out of the RoyaltyLedger contract."""

    __tablename__ = "token_transfers"
    __table_args__ = (UniqueConstraint("block_number", "log_index"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    from_address: Mapped[str] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(Amount)


# Tables the indexer owns (emptied by a rebuild), children before parents.
class IndexAnomaly(Base):
    """Something the contracts accepted that the index cannot attribute (e.g. plays of a work id
    never registered): recorded and logged, and indexing goes on."""

    __tablename__ = "index_anomalies"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    log_index: Mapped[int] = mapped_column(Integer)
    tx_hash: Mapped[str] = mapped_column(String(66))
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(String(500))


INDEXED_TABLES = [
    Play.__table__,
    PlayBatch.__table__,
    BatchSkip.__table__,
    WorkPeriodStats.__table__,
    PayeeCredit.__table__,
    Distribution.__table__,
    Withdrawal.__table__,
    Payee.__table__,
    TokenTransfer.__table__,
    EscrowMovement.__table__,
    LicensePurchase.__table__,
    License.__table__,
    Device.__table__,
    Licensee.__table__,
    Terms.__table__,
    SplitShare.__table__,
    WorkUriUpdate.__table__,
    WorkTransfer.__table__,
    Work.__table__,
    IndexAnomaly.__table__,
    IndexedBlock.__table__,
    IndexerCheckpoint.__table__,
]
