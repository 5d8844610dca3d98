"""portal devices: a licensee's device names, territories and registration domain (off-chain only)

Revision ID: 0400
Revises: 0320
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0400'
down_revision = '0320'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('portal_devices',
    sa.Column('id', ID, nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('territory', sa.String(length=2), nullable=False),
    sa.Column('chain_id', sa.BigInteger(), nullable=False),
    sa.Column('ledger', sa.String(length=42), nullable=False),
    sa.Column('device_id', sa.BigInteger(), nullable=True),
    sa.Column('register_action_id', sa.BigInteger(), nullable=True),
    sa.Column('revoke_action_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['portal_users.id'], name=op.f('fk_portal_devices_user_id_portal_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_devices'))
    )
    op.create_index(op.f('ix_portal_devices_user_id_address'), 'portal_devices', ['user_id', 'address'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_portal_devices_user_id_address'), table_name='portal_devices')
    op.drop_table('portal_devices')
