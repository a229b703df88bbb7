"""metering protocol 2: a sample record is 13 fields (54 bytes) instead of 8 (32 bytes)

Reports signed under protocol 1 (EIP-712 domain version "1") can never settle on a protocol-2 escrow, and
their packed samples cannot be read as protocol-2 records: a store that holds any is refused, with what to
do, rather than silently misread.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.store.migrations.runner import MigrationRefused

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    held = op.get_bind().execute(sa.text('SELECT COUNT(*) FROM reports')).scalar() or 0
    if held:
        raise MigrationRefused(
            f'this store holds {held} protocol-1 metering reports, which a protocol-2 bridge cannot serve or '
            'settle: keep serving it with the previous release until its leases are settled (export them with '
            'GET /v1/audit/archive), then start this bridge on a new database'
        )


def downgrade() -> None:
    held = op.get_bind().execute(sa.text('SELECT COUNT(*) FROM reports')).scalar() or 0
    if held:
        raise MigrationRefused(f'this store holds {held} protocol-2 metering reports: protocol 1 cannot read them')
