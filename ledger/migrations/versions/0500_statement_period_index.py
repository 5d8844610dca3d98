"""work_period_stats indexed by (period, work_id): a month's statement reads one month's rows

The summary's primary key (work_id, period, territory) serves one work's months; a payee's
statement for a month wants the rows of that month for its works, which without this index is a
scan of the whole summary (every work, month and territory). Its columns are never updated, so
the indexer's upserts of the counters stay HOT updates (see 0320).

Revision ID: 0500
Revises: 0400
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op


revision = '0500'
down_revision = '0400'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_work_period_stats_period_work_id', 'work_period_stats', ['period', 'work_id'])


def downgrade() -> None:
    op.drop_index('ix_work_period_stats_period_work_id', table_name='work_period_stats')
