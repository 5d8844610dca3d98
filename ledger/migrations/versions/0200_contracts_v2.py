"""contracts v2: previous METERED period per license, devices re-registered, index anomalies

Revision ID: 0200
Revises: 0100
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0200'
down_revision = '0100'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('licenses') as batch:
        batch.add_column(sa.Column('prev_rate_per_play', sa.BigInteger(), server_default='0', nullable=False))
        batch.add_column(sa.Column('prev_expiry', sa.BigInteger(), server_default='0', nullable=False))
    with op.batch_alter_table('devices') as batch:
        batch.drop_constraint('uq_devices_address', type_='unique')
        batch.create_index('ix_devices_address', ['address'], unique=False)
        batch.add_column(sa.Column('revoked_at', sa.BigInteger(), nullable=True))
    op.create_table('index_anomalies',
    sa.Column('id', ID, nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_index_anomalies'))
    )
    op.create_index(op.f('ix_index_anomalies_block_number'), 'index_anomalies', ['block_number'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_index_anomalies_block_number'), table_name='index_anomalies')
    op.drop_table('index_anomalies')
    with op.batch_alter_table('devices') as batch:
        batch.drop_column('revoked_at')
        batch.drop_index('ix_devices_address')
        batch.create_unique_constraint('uq_devices_address', ['address'])
    with op.batch_alter_table('licenses') as batch:
        batch.drop_column('prev_expiry')
        batch.drop_column('prev_rate_per_play')
