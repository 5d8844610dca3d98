"""reorg rollback: stored block hashes, and what a partial rollback needs to restore keyed rows

Revision ID: 0510
Revises: 0500
Create Date: 2026-11-28

Indexes written before this revision lack ``works.registered_uri`` of updated works,
``works.split_locked_block`` of locked splits and the previous period of license purchases: a
rollback that needs one of them rolls back to the deploy block instead (as before this revision).
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0510'
down_revision = '0500'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('indexed_blocks',
    sa.Column('block_number', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=False),
    sa.PrimaryKeyConstraint('block_number', name=op.f('pk_indexed_blocks'))
    )
    with op.batch_alter_table('works') as batch:
        batch.add_column(sa.Column('registered_uri', sa.String(), nullable=True))
        batch.add_column(sa.Column('split_locked_block', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('license_purchases') as batch:
        batch.add_column(sa.Column('prev_rate_per_play', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('prev_expiry', sa.BigInteger(), nullable=True))
    # A work never updated still has the URI it was registered with.
    op.execute(
        "UPDATE works SET registered_uri = uri WHERE NOT EXISTS "
        "(SELECT 1 FROM work_uri_updates u WHERE u.work_id = works.work_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table('license_purchases') as batch:
        batch.drop_column('prev_expiry')
        batch.drop_column('prev_rate_per_play')
    with op.batch_alter_table('works') as batch:
        batch.drop_column('split_locked_block')
        batch.drop_column('registered_uri')
    op.drop_table('indexed_blocks')
