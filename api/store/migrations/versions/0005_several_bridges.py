"""several bridges on one database: idempotency records know their owner and their transactions

``idempotency.owner`` is the bridge process running a ``pending`` request (``bridge_instances`` holds each
live process with a heartbeat: a request of a process that stopped or went silent is ``abandoned``, never
"in progress" forever, and a live one's twin on another bridge waits for it); ``idempotency.tx_hashes`` lists
the transactions the request broadcast, written as each one goes out, so any later attempt (on any bridge,
after any crash) answers from their receipts instead of sending again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('idempotency') as b:
        b.add_column(sa.Column('owner', sa.String(length=64), nullable=True))
        b.add_column(sa.Column('tx_hashes', sa.Text(), nullable=True))
    op.create_table('bridge_instances',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('started_ms', sa.BigInteger(), nullable=False),
    sa.Column('heartbeat_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('bridge_instances')
    with op.batch_alter_table('idempotency') as b:
        b.drop_column('tx_hashes')
        b.drop_column('owner')
