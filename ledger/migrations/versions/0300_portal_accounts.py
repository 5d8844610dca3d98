"""portal accounts, API tokens and gasless actions (off-chain only)

Revision ID: 0300
Revises: 0200
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0300'
down_revision = '0200'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('portal_users',
    sa.Column('id', ID, nullable=False),
    sa.Column('username', sa.String(length=42), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('roles', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('wallet', sa.Boolean(), nullable=False),
    sa.Column('encrypted_key', sa.LargeBinary(), nullable=True),
    sa.Column('payout_address', sa.String(length=42), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_users')),
    sa.UniqueConstraint('address', name=op.f('uq_portal_users_address')),
    sa.UniqueConstraint('username', name=op.f('uq_portal_users_username'))
    )
    op.create_table('portal_api_tokens',
    sa.Column('id', ID, nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('last_used_at', sa.BigInteger(), nullable=True),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['portal_users.id'], name=op.f('fk_portal_api_tokens_user_id_portal_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_portal_api_tokens_token_hash'))
    )
    op.create_index(op.f('ix_portal_api_tokens_user_id'), 'portal_api_tokens', ['user_id'], unique=False)
    op.create_table('portal_actions',
    sa.Column('id', ID, nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('work_id', sa.BigInteger(), nullable=True),
    sa.Column('request', sa.Text(), nullable=True),
    sa.Column('day', sa.Integer(), nullable=False),
    sa.Column('gas_reserved', sa.BigInteger(), nullable=False),
    sa.Column('gas_used', sa.BigInteger(), nullable=True),
    sa.Column('tx_hash', sa.String(length=66), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['portal_users.id'], name=op.f('fk_portal_actions_user_id_portal_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_actions'))
    )
    op.create_index(op.f('ix_portal_actions_user_id_day'), 'portal_actions', ['user_id', 'day'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_portal_actions_user_id_day'), table_name='portal_actions')
    op.drop_table('portal_actions')
    op.drop_index(op.f('ix_portal_api_tokens_user_id'), table_name='portal_api_tokens')
    op.drop_table('portal_api_tokens')
    op.drop_table('portal_users')
