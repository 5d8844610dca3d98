"""The durable store of play batches between ingest and the chain (off-chain only data).

A batch is written here by :mod:`ledger.ingest` before the device gets its acknowledgement, and
moves through these states, driven by :mod:`ledger.relayer`::

    pending --(packed into a signed transaction, recorded BEFORE it is broadcast)--> inflight
    inflight --(receipt: in PlaysRecorded)---------------------------------------> confirmed
    inflight --(receipt: BatchSkipped, any reason but InsufficientEscrow)--------> rejected
    inflight --(receipt: BatchSkipped InsufficientEscrow, or the tx reverted)----> pending
    inflight --(no receipt after a crash: nonce unused on chain)-----------------> pending
    pending --(pays nobody, and the licensee's daily allowance of such plays is spent)--> pending
              with reason UnlicensedLimit, packed again after ``unlicensed_retry_after``

``(device, nonce)`` is unique: a device cannot have two stored batches under one nonce, so an
identical resend is found and answered idempotently and a different batch reusing the nonce is
refused. ``digest`` (the EIP-712 digest the device signed) names the batch's content.

These tables are not rebuilt from chain events (they hold what the chain has not seen yet);
Alembic owns their schema: ``ledger/migrations/versions/0100_pending_batches.py`` and
``0310_relay_unlicensed_usage.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base

PENDING = "pending"
INFLIGHT = "inflight"
CONFIRMED = "confirmed"
REJECTED = "rejected"
BATCH_STATES = (PENDING, INFLIGHT, CONFIRMED, REJECTED)

TX_SENT = "sent"  # signed and recorded; maybe broadcast, maybe mined
TX_DONE = "done"  # its batches were settled from its receipt (or from chain state)

_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys only


def utcnow() -> datetime:
    return datetime.now(UTC)


class RelayTransaction(Base):
    """A submitBatches transaction of the relayer, recorded before it is broadcast.

    ``tx_hashes`` lists every signed version (a fee bump re-signs the same account nonce), the
    newest last; at most one of them can be mined. ``raw_tx`` is the newest signed version, kept
    so that a transaction the node lost can be broadcast again after a crash.
    """

    __tablename__ = "relay_transactions"
    __table_args__ = (Index(None, "status"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    sender: Mapped[str] = mapped_column(String(42))
    tx_nonce: Mapped[int] = mapped_column(BigInteger)
    tx_hashes: Mapped[str] = mapped_column(Text)  # comma-separated 0x hashes, newest last
    raw_tx: Mapped[bytes] = mapped_column(LargeBinary)
    gas_limit: Mapped[int] = mapped_column(BigInteger)
    calldata_size: Mapped[int] = mapped_column(Integer)
    batch_count: Mapped[int] = mapped_column(Integer)
    sent_block: Mapped[int] = mapped_column(BigInteger)  # latest block when it was signed
    status: Mapped[str] = mapped_column(String(16), default=TX_SENT)
    mined_tx_hash: Mapped[str | None] = mapped_column(String(66))
    mined_block: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    @property
    def hashes(self) -> list[str]:
        return [h for h in self.tx_hashes.split(",") if h]


class PendingBatch(Base):
    """A signed play batch accepted by ingest, until the chain has applied or refused it."""

    __tablename__ = "pending_batches"
    __table_args__ = (
        UniqueConstraint("device", "nonce"),
        UniqueConstraint("digest"),
        Index(None, "status", "licensee_index", "device_number", "nonce"),
        Index(None, "relay_tx_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    device: Mapped[str] = mapped_column(String(42))  # EIP-55
    licensee_index: Mapped[int] = mapped_column(BigInteger)
    device_number: Mapped[int] = mapped_column(BigInteger)
    nonce: Mapped[int] = mapped_column(BigInteger)
    from_time: Mapped[int] = mapped_column(BigInteger)
    to_time: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[bytes] = mapped_column(LargeBinary)  # 6 bytes per entry, as signed
    signature: Mapped[bytes] = mapped_column(LargeBinary)  # 64 bytes, EIP-2098
    digest: Mapped[str] = mapped_column(String(66))  # EIP-712 digest, 0x hex
    entry_count: Mapped[int] = mapped_column(Integer)
    plays: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(8))  # http | mqtt
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    reason: Mapped[str | None] = mapped_column(String(32))  # skip reason when rejected
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # transactions it was packed into
    relay_tx_id: Mapped[int | None] = mapped_column(ForeignKey("relay_transactions.id"))
    confirmed_tx_hash: Mapped[str | None] = mapped_column(String(66))
    confirmed_block: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    @property
    def device_id(self) -> int:
        return (self.licensee_index << 32) | self.device_number


class RelayUnlicensedUsage(Base):
    """Plays of batches that pay nobody (no entry licensed at the batch's toTime) that the relayer
    packed for a licensee on a UTC day: what ``LEDGER_UNLICENSED_PLAYS_PER_DAY`` is checked
    against. A batch packed again after its transaction was lost counts again (an over-count errs
    towards spending less gas, never more)."""

    __tablename__ = "relay_unlicensed_usage"

    licensee_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # days since 1970-01-01 UTC
    plays: Mapped[int] = mapped_column(BigInteger, default=0)


TABLES: list[Table] = [
    cast(Table, RelayTransaction.__table__),
    cast(Table, PendingBatch.__table__),
    cast(Table, RelayUnlicensedUsage.__table__),
]


def create_tables(engine: Engine) -> None:
    """Creates just these tables (tests and tools; production runs the Alembic migration)."""
    Base.metadata.create_all(engine, tables=TABLES)
