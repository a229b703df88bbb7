"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('roles', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.Column('encrypted_key', sa.LargeBinary(), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('address')
    )
    op.create_table('checkpoints',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=False),
    sa.Column('block_ts', sa.BigInteger(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('log_index', sa.Integer(), nullable=False),
    sa.Column('contract', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('args', sa.Text(), nullable=False),
    sa.Column('lease_id', sa.BigInteger(), nullable=True),
    sa.Column('node_id', sa.BigInteger(), nullable=True),
    sa.Column('offer_id', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('block_hash', 'log_index', name='uq_events_block_log')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_block_number'), ['block_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_lease_id'), ['lease_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_node_id'), ['node_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_offer_id'), ['offer_id'], unique=False)

    op.create_table('idempotency',
    sa.Column('principal', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('request_hash', sa.String(length=66), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('body', sa.LargeBinary(), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('principal', 'key')
    )
    op.create_table('indexed_blocks',
    sa.Column('number', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=66), nullable=False),
    sa.Column('parent_hash', sa.String(length=66), nullable=False),
    sa.PrimaryKeyConstraint('number')
    )
    op.create_table('leases',
    sa.Column('lease_id', sa.BigInteger(), nullable=False),
    sa.Column('offer_id', sa.BigInteger(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), nullable=False),
    sa.Column('buyer', sa.String(length=42), nullable=False),
    sa.Column('provider', sa.String(length=42), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('lease_id')
    )
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leases_buyer'), ['buyer'], unique=False)
        batch_op.create_index(batch_op.f('ix_leases_node_id'), ['node_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_leases_provider'), ['provider'], unique=False)
        batch_op.create_index(batch_op.f('ix_leases_status'), ['status'], unique=False)

    op.create_table('nodes',
    sa.Column('node_id', sa.BigInteger(), nullable=False),
    sa.Column('provider', sa.String(length=42), nullable=False),
    sa.Column('attestor', sa.String(length=42), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('node_id')
    )
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nodes_attestor'), ['attestor'], unique=False)
        batch_op.create_index(batch_op.f('ix_nodes_provider'), ['provider'], unique=False)

    op.create_table('offers',
    sa.Column('offer_id', sa.BigInteger(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), nullable=False),
    sa.Column('provider', sa.String(length=42), nullable=False),
    sa.Column('gpu_model', sa.String(length=64), nullable=False),
    sa.Column('gpu_count', sa.Integer(), nullable=False),
    sa.Column('vram_mib', sa.BigInteger(), nullable=False),
    sa.Column('region', sa.String(length=16), nullable=False),
    sa.Column('token', sa.String(length=42), nullable=False),
    sa.Column('billing_mode', sa.Integer(), nullable=False),
    sa.Column('live_lease_id', sa.BigInteger(), nullable=False),
    sa.Column('price_per_gpu_hour', sa.String(length=78), nullable=False),
    sa.Column('valid_until', sa.BigInteger(), nullable=False),
    sa.Column('provider_score_bps', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('offer_id')
    )
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_offers_gpu_model'), ['gpu_model'], unique=False)
        batch_op.create_index(batch_op.f('ix_offers_node_id'), ['node_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_offers_price_per_gpu_hour'), ['price_per_gpu_hour'], unique=False)
        batch_op.create_index(batch_op.f('ix_offers_provider'), ['provider'], unique=False)
        batch_op.create_index(batch_op.f('ix_offers_region'), ['region'], unique=False)

    op.create_table('providers',
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('score_bps', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('address')
    )
    op.create_table('sample_sets',
    sa.Column('root', sa.String(length=66), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('root')
    )
    op.create_table('settlement_txs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('sender', sa.String(length=42), nullable=False),
    sa.Column('nonce', sa.BigInteger(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tx_hash')
    )
    with op.batch_alter_table('settlement_txs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_settlement_txs_status'), ['status'], unique=False)

    op.create_table('api_keys',
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('secret_hash', sa.LargeBinary(), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['address'], ['accounts.address'], ),
    sa.PrimaryKeyConstraint('key_id')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_address'), ['address'], unique=False)

    op.create_table('reports',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('lease_id', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('struct_hash', sa.String(length=66), nullable=False),
    sa.Column('signer', sa.String(length=42), nullable=False),
    sa.Column('signature', sa.String(length=132), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('samples_root', sa.String(length=66), nullable=False),
    sa.Column('window_end_ms', sa.BigInteger(), nullable=False),
    sa.Column('cum_billable', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('settle_tx_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('accepted_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['settle_tx_id'], ['settlement_txs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lease_id', 'seq', name='uq_reports_lease_seq'),
    sa.UniqueConstraint('struct_hash')
    )
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index('ix_reports_lease_status', ['lease_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_reports_status'), ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reports_status'))
        batch_op.drop_index('ix_reports_lease_status')

    op.drop_table('reports')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_address'))

    op.drop_table('api_keys')
    with op.batch_alter_table('settlement_txs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_settlement_txs_status'))

    op.drop_table('settlement_txs')
    op.drop_table('sample_sets')
    op.drop_table('providers')
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_offers_region'))
        batch_op.drop_index(batch_op.f('ix_offers_provider'))
        batch_op.drop_index(batch_op.f('ix_offers_price_per_gpu_hour'))
        batch_op.drop_index(batch_op.f('ix_offers_node_id'))
        batch_op.drop_index(batch_op.f('ix_offers_gpu_model'))

    op.drop_table('offers')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nodes_provider'))
        batch_op.drop_index(batch_op.f('ix_nodes_attestor'))

    op.drop_table('nodes')
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leases_status'))
        batch_op.drop_index(batch_op.f('ix_leases_provider'))
        batch_op.drop_index(batch_op.f('ix_leases_node_id'))
        batch_op.drop_index(batch_op.f('ix_leases_buyer'))

    op.drop_table('leases')
    op.drop_table('indexed_blocks')
    op.drop_table('idempotency')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_offer_id'))
        batch_op.drop_index(batch_op.f('ix_events_node_id'))
        batch_op.drop_index(batch_op.f('ix_events_name'))
        batch_op.drop_index(batch_op.f('ix_events_lease_id'))
        batch_op.drop_index(batch_op.f('ix_events_block_number'))

    op.drop_table('events')
    op.drop_table('checkpoints')
    op.drop_table('accounts')
