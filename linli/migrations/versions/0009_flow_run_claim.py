"""flow run claims: one row per scheduling of a flow run that a warm worker took

Revision ID: 0009_flow_run_claim
Revises: 0008_partitions
Create Date: 2026-12-06 05:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import linli.models.base

revision: str = '0009_flow_run_claim'
down_revision: str | None = '0008_partitions'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'flow_run_claim',
        sa.Column('flow_run_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('state_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('claimed_at', linli.models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('flow_run_id', 'state_id'),
    )
    op.create_index('ix_flow_run_claim_claimed_at', 'flow_run_claim', ['claimed_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_flow_run_claim_claimed_at', table_name='flow_run_claim')
    op.drop_table('flow_run_claim')
