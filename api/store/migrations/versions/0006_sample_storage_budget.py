"""storage with a budget: samples stored compressed (``sample_sets.codec``), and a report whose samples moved to
the archive names its segment (``reports.archive``); each report keeps its GPUs' energy counters
(``reports.energy_carry``) for the next report's energy check

Existing sample sets keep codec 0 (packed records), which the bridge still reads; new ones are codec 1.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sample_sets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('codec', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archive', sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column('energy_carry', sa.Text(), nullable=True))
        batch_op.create_index('ix_reports_archive_status', ['archive', 'status'], unique=False)


def downgrade() -> None:
    held = op.get_bind().execute(sa.text('SELECT COUNT(*) FROM reports WHERE archive IS NOT NULL')).scalar() or 0
    if held:
        from api.store.migrations.runner import MigrationRefused

        raise MigrationRefused(
            f'{held} reports have their samples in the archive only: revision 0005 cannot serve them'
        )
    compressed = op.get_bind().execute(sa.text('SELECT COUNT(*) FROM sample_sets WHERE codec <> 0')).scalar() or 0
    if compressed:
        from api.store.migrations.runner import MigrationRefused

        raise MigrationRefused(f'{compressed} sample sets are compressed: revision 0005 cannot read them')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index('ix_reports_archive_status')
        batch_op.drop_column('energy_carry')
        batch_op.drop_column('archive')
    with op.batch_alter_table('sample_sets', schema=None) as batch_op:
        batch_op.drop_column('codec')
