"""initial index schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batch_skips',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('device_id', sa.BigInteger(), nullable=False),
    sa.Column('nonce', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_skips')),
    sa.UniqueConstraint('block_number', 'log_index', name=op.f('uq_batch_skips_block_number_log_index'))
    )
    op.create_index(op.f('ix_batch_skips_device_id_nonce'), 'batch_skips', ['device_id', 'nonce'], unique=False)

    op.create_table('devices',
    sa.Column('device_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('licensee', sa.String(length=42), nullable=False),
    sa.Column('territory', sa.String(length=2), nullable=False),
    sa.Column('registered_block', sa.BigInteger(), nullable=False),
    sa.Column('registered_at', sa.BigInteger(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('revoked_block', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_devices')),
    sa.UniqueConstraint('address', name=op.f('uq_devices_address'))
    )
    op.create_index(op.f('ix_devices_licensee'), 'devices', ['licensee'], unique=False)

    op.create_table('distributions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('work_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_distributions')),
    sa.UniqueConstraint('block_number', 'log_index', name=op.f('uq_distributions_block_number_log_index'))
    )
    op.create_index(op.f('ix_distributions_work_id_period'), 'distributions', ['work_id', 'period'], unique=False)

    op.create_table('escrow_movements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('licensee', sa.String(length=42), nullable=False),
    sa.Column('counterparty', sa.String(length=42), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('amount', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escrow_movements')),
    sa.UniqueConstraint('block_number', 'log_index', name=op.f('uq_escrow_movements_block_number_log_index'))
    )
    op.create_index(op.f('ix_escrow_movements_licensee'), 'escrow_movements', ['licensee'], unique=False)

    op.create_table('indexer_checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chain_id', sa.BigInteger(), nullable=False),
    sa.Column('ledger_address', sa.String(length=42), nullable=False),
    sa.Column('deploy_block', sa.BigInteger(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_indexer_checkpoint'))
    )
    op.create_table('license_purchases',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('licensee', sa.String(length=42), nullable=False),
    sa.Column('work_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.SmallInteger(), nullable=False),
    sa.Column('fee', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('rate_per_play', sa.BigInteger(), nullable=False),
    sa.Column('expiry', sa.BigInteger(), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_license_purchases')),
    sa.UniqueConstraint('block_number', 'log_index', name=op.f('uq_license_purchases_block_number_log_index'))
    )
    op.create_index(op.f('ix_license_purchases_licensee'), 'license_purchases', ['licensee'], unique=False)
    op.create_index(op.f('ix_license_purchases_work_id_period'), 'license_purchases', ['work_id', 'period'], unique=False)

    op.create_table('licensees',
    sa.Column('licensee_index', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('registered_block', sa.BigInteger(), nullable=False),
    sa.Column('escrow_deposited', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('escrow_withdrawn', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('escrow_charged', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.PrimaryKeyConstraint('licensee_index', name=op.f('pk_licensees')),
    sa.UniqueConstraint('address', name=op.f('uq_licensees_address'))
    )
    op.create_table('licenses',
    sa.Column('licensee', sa.String(length=42), nullable=False),
    sa.Column('work_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('kind', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('rate_per_play', sa.BigInteger(), nullable=False),
    sa.Column('expiry', sa.BigInteger(), nullable=False),
    sa.Column('fees_paid', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('updated_block', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('licensee', 'work_id', 'kind', name=op.f('pk_licenses'))
    )
    op.create_table('payee_credits',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('work_id', sa.BigInteger(), nullable=False),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.Column('payee', sa.String(length=42), nullable=False),
    sa.Column('bps', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payee_credits')),
    sa.UniqueConstraint('block_number', 'log_index', 'position', name=op.f('uq_payee_credits_block_number_log_index_position'))
    )
    op.create_index(op.f('ix_payee_credits_payee_period_work_id'), 'payee_credits', ['payee', 'period', 'work_id'], unique=False)

    op.create_table('payees',
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('credited', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('withdrawn', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.PrimaryKeyConstraint('address', name=op.f('pk_payees'))
    )
    op.create_table('play_batches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('batch_index', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.BigInteger(), nullable=False),
    sa.Column('licensee_index', sa.BigInteger(), nullable=False),
    sa.Column('nonce', sa.BigInteger(), nullable=False),
    sa.Column('from_time', sa.BigInteger(), nullable=False),
    sa.Column('to_time', sa.BigInteger(), nullable=False),
    sa.Column('charged', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('entries', sa.Integer(), nullable=False),
    sa.Column('plays', sa.BigInteger(), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_play_batches')),
    sa.UniqueConstraint('block_number', 'log_index', 'batch_index', name=op.f('uq_play_batches_block_number_log_index_batch_index'))
    )
    op.create_index(op.f('ix_play_batches_device_id_nonce'), 'play_batches', ['device_id', 'nonce'], unique=False)

    op.create_table('plays',
    sa.Column('block_number', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('log_index', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('batch_index', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('work_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('device_id', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('licensed', sa.Boolean(), nullable=False),
    sa.Column('rate', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('territory', sa.String(length=2), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('block_number', 'log_index', 'batch_index', 'work_id', name=op.f('pk_plays'))
    )
    op.create_index(op.f('ix_plays_work_id_period'), 'plays', ['work_id', 'period'], unique=False)

    op.create_table('split_shares',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('work_id', sa.BigInteger(), nullable=False),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.Column('payee', sa.String(length=42), nullable=False),
    sa.Column('bps', sa.Integer(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_split_shares')),
    sa.UniqueConstraint('block_number', 'log_index', 'position', name=op.f('uq_split_shares_block_number_log_index_position'))
    )
    op.create_index(op.f('ix_split_shares_payee_work_id'), 'split_shares', ['payee', 'work_id'], unique=False)
    op.create_index(op.f('ix_split_shares_work_id_block_number_log_index'), 'split_shares', ['work_id', 'block_number', 'log_index'], unique=False)

    op.create_table('terms',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('work_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.SmallInteger(), nullable=False),
    sa.Column('fee', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('rate_per_play', sa.BigInteger(), nullable=False),
    sa.Column('duration', sa.BigInteger(), nullable=False),
    sa.Column('offered', sa.Boolean(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_terms')),
    sa.UniqueConstraint('block_number', 'log_index', name=op.f('uq_terms_block_number_log_index'))
    )
    op.create_index(op.f('ix_terms_work_id_kind_block_number'), 'terms', ['work_id', 'kind', 'block_number'], unique=False)

    op.create_table('token_transfers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('from_address', sa.String(length=42), nullable=False),
    sa.Column('to_address', sa.String(length=42), nullable=False),
    sa.Column('amount', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_token_transfers')),
    sa.UniqueConstraint('block_number', 'log_index', name=op.f('uq_token_transfers_block_number_log_index'))
    )
    op.create_table('withdrawals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payee', sa.String(length=42), nullable=False),
    sa.Column('to_address', sa.String(length=42), nullable=False),
    sa.Column('amount', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_withdrawals')),
    sa.UniqueConstraint('block_number', 'log_index', name=op.f('uq_withdrawals_block_number_log_index'))
    )
    op.create_index(op.f('ix_withdrawals_payee'), 'withdrawals', ['payee'], unique=False)

    op.create_table('work_period_stats',
    sa.Column('work_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('period', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('territory', sa.String(length=2), nullable=False),
    sa.Column('plays', sa.BigInteger(), nullable=False),
    sa.Column('licensed_plays', sa.BigInteger(), nullable=False),
    sa.Column('play_gross', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('fee_gross', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.PrimaryKeyConstraint('work_id', 'period', 'territory', name=op.f('pk_work_period_stats'))
    )
    op.create_table('work_transfers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('work_id', sa.BigInteger(), nullable=False),
    sa.Column('from_address', sa.String(length=42), nullable=False),
    sa.Column('to_address', sa.String(length=42), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_work_transfers')),
    sa.UniqueConstraint('block_number', 'log_index', name=op.f('uq_work_transfers_block_number_log_index'))
    )
    op.create_index(op.f('ix_work_transfers_work_id'), 'work_transfers', ['work_id'], unique=False)

    op.create_table('work_uri_updates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('work_id', sa.BigInteger(), nullable=False),
    sa.Column('uri', sa.String(), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_work_uri_updates')),
    sa.UniqueConstraint('block_number', 'log_index', name=op.f('uq_work_uri_updates_block_number_log_index'))
    )
    op.create_index(op.f('ix_work_uri_updates_work_id'), 'work_uri_updates', ['work_id'], unique=False)

    op.create_table('works',
    sa.Column('work_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('owner', sa.String(length=42), nullable=False),
    sa.Column('registrant', sa.String(length=42), nullable=False),
    sa.Column('isrc', sa.String(length=12), nullable=True),
    sa.Column('iswc', sa.String(length=15), nullable=True),
    sa.Column('title', sa.String(length=500), nullable=True),
    sa.Column('uri', sa.String(), nullable=False),
    sa.Column('registered_block', sa.BigInteger(), nullable=False),
    sa.Column('registered_at', sa.BigInteger(), nullable=False),
    sa.Column('split_locked', sa.Boolean(), nullable=False),
    sa.Column('plays', sa.BigInteger(), nullable=False),
    sa.Column('licensed_plays', sa.BigInteger(), nullable=False),
    sa.Column('accrued', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('distributed', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.PrimaryKeyConstraint('work_id', name=op.f('pk_works')),
    sa.UniqueConstraint('isrc', name=op.f('uq_works_isrc'))
    )
    op.create_index(op.f('ix_works_owner'), 'works', ['owner'], unique=False)



def downgrade() -> None:
    op.drop_index(op.f('ix_works_owner'), table_name='works')

    op.drop_table('works')
    op.drop_index(op.f('ix_work_uri_updates_work_id'), table_name='work_uri_updates')

    op.drop_table('work_uri_updates')
    op.drop_index(op.f('ix_work_transfers_work_id'), table_name='work_transfers')

    op.drop_table('work_transfers')
    op.drop_table('work_period_stats')
    op.drop_index(op.f('ix_withdrawals_payee'), table_name='withdrawals')

    op.drop_table('withdrawals')
    op.drop_table('token_transfers')
    op.drop_index(op.f('ix_terms_work_id_kind_block_number'), table_name='terms')

    op.drop_table('terms')
    op.drop_index(op.f('ix_split_shares_work_id_block_number_log_index'), table_name='split_shares')
    op.drop_index(op.f('ix_split_shares_payee_work_id'), table_name='split_shares')

    op.drop_table('split_shares')
    op.drop_index(op.f('ix_plays_work_id_period'), table_name='plays')

    op.drop_table('plays')
    op.drop_index(op.f('ix_play_batches_device_id_nonce'), table_name='play_batches')

    op.drop_table('play_batches')
    op.drop_table('payees')
    op.drop_index(op.f('ix_payee_credits_payee_period_work_id'), table_name='payee_credits')

    op.drop_table('payee_credits')
    op.drop_table('licenses')
    op.drop_table('licensees')
    op.drop_index(op.f('ix_license_purchases_work_id_period'), table_name='license_purchases')
    op.drop_index(op.f('ix_license_purchases_licensee'), table_name='license_purchases')

    op.drop_table('license_purchases')
    op.drop_table('indexer_checkpoint')
    op.drop_index(op.f('ix_escrow_movements_licensee'), table_name='escrow_movements')

    op.drop_table('escrow_movements')
    op.drop_index(op.f('ix_distributions_work_id_period'), table_name='distributions')

    op.drop_table('distributions')
    op.drop_index(op.f('ix_devices_licensee'), table_name='devices')

    op.drop_table('devices')
    op.drop_index(op.f('ix_batch_skips_device_id_nonce'), table_name='batch_skips')

    op.drop_table('batch_skips')
