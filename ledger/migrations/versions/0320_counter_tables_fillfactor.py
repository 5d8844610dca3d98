"""counter tables leave room on each page for HOT updates (PostgreSQL only)

The indexer upserts the per (work, month, territory) summary and the works' counters once per
block range. Each update writes a new row version; on a full page (fillfactor 100) it goes to
another page with a new index entry, and the table and its primary key bloat until a vacuum
(62 MiB was seen for 120k summary rows). With free space on the page the update is HOT (no index
entry, the old version pruned on the page), so the table stays near its live size.

Revision ID: 0320
Revises: 0310
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op


revision = '0320'
down_revision = '0310'
branch_labels = None
depends_on = None

TABLES = ('work_period_stats', 'works', 'payees', 'licensees')


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.05)')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} RESET (fillfactor, autovacuum_vacuum_scale_factor)')
