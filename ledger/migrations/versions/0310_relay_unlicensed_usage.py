"""the relayer's daily count of plays that pay nobody, per licensee (off-chain only)

Revision ID: 0310
Revises: 0300
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0310'
down_revision = '0300'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('relay_unlicensed_usage',
    sa.Column('licensee_index', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('day', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('plays', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('licensee_index', 'day')
    )


def downgrade() -> None:
    op.drop_table('relay_unlicensed_usage')
