"""event record index: the records of one CheckpointsSettled log are stored as events sharing its log index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite rebuilds the table (existing rows get record_index 0, their only record)
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record_index', sa.Integer(), server_default='0', nullable=False))
        batch_op.drop_constraint('uq_events_block_log', type_='unique')
        batch_op.create_unique_constraint('uq_events_block_log_record', ['block_hash', 'log_index', 'record_index'])


def downgrade() -> None:
    # events of a multi-record log cannot share (block_hash, log_index) again: keep their first record
    op.execute(sa.text('DELETE FROM events WHERE record_index <> 0'))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_events_block_log_record', type_='unique')
        batch_op.create_unique_constraint('uq_events_block_log', ['block_hash', 'log_index'])
        batch_op.drop_column('record_index')
