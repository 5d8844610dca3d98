"""pending play batches and relayer transactions (ingest + relayer, off-chain only)

Revision ID: 0100
Revises: 0001
Create Date: 2026-11-25
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0100'
down_revision = '0001'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('relay_transactions',
    sa.Column('id', ID, nullable=False),
    sa.Column('sender', sa.String(length=42), nullable=False),
    sa.Column('tx_nonce', sa.BigInteger(), nullable=False),
    sa.Column('tx_hashes', sa.Text(), nullable=False),
    sa.Column('raw_tx', sa.LargeBinary(), nullable=False),
    sa.Column('gas_limit', sa.BigInteger(), nullable=False),
    sa.Column('calldata_size', sa.Integer(), nullable=False),
    sa.Column('batch_count', sa.Integer(), nullable=False),
    sa.Column('sent_block', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('mined_tx_hash', sa.String(length=66), nullable=True),
    sa.Column('mined_block', sa.BigInteger(), nullable=True),
    sa.Column('gas_used', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_relay_transactions'))
    )
    op.create_index(op.f('ix_relay_transactions_status'), 'relay_transactions', ['status'], unique=False)

    op.create_table('pending_batches',
    sa.Column('id', ID, nullable=False),
    sa.Column('device', sa.String(length=42), nullable=False),
    sa.Column('licensee_index', sa.BigInteger(), nullable=False),
    sa.Column('device_number', sa.BigInteger(), nullable=False),
    sa.Column('nonce', sa.BigInteger(), nullable=False),
    sa.Column('from_time', sa.BigInteger(), nullable=False),
    sa.Column('to_time', sa.BigInteger(), nullable=False),
    sa.Column('entries', sa.LargeBinary(), nullable=False),
    sa.Column('signature', sa.LargeBinary(), nullable=False),
    sa.Column('digest', sa.String(length=66), nullable=False),
    sa.Column('entry_count', sa.Integer(), nullable=False),
    sa.Column('plays', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('relay_tx_id', ID, nullable=True),
    sa.Column('confirmed_tx_hash', sa.String(length=66), nullable=True),
    sa.Column('confirmed_block', sa.BigInteger(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['relay_tx_id'], ['relay_transactions.id'],
                            name=op.f('fk_pending_batches_relay_tx_id_relay_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_batches')),
    sa.UniqueConstraint('device', 'nonce', name=op.f('uq_pending_batches_device_nonce')),
    sa.UniqueConstraint('digest', name=op.f('uq_pending_batches_digest'))
    )
    op.create_index(op.f('ix_pending_batches_status_licensee_index_device_number_nonce'), 'pending_batches',
                    ['status', 'licensee_index', 'device_number', 'nonce'], unique=False)
    op.create_index(op.f('ix_pending_batches_relay_tx_id'), 'pending_batches', ['relay_tx_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_pending_batches_relay_tx_id'), table_name='pending_batches')
    op.drop_index(op.f('ix_pending_batches_status_licensee_index_device_number_nonce'),
                  table_name='pending_batches')
    op.drop_table('pending_batches')
    op.drop_index(op.f('ix_relay_transactions_status'), table_name='relay_transactions')
    op.drop_table('relay_transactions')
