"""volunteer grid: a volunteer may serve one grid (pool offers go to the case's grid)

Revision ID: 0007_volunteer_grid
Revises: 0006_people
Create Date: 2026-11-25 18:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_volunteer_grid'
down_revision: str | None = '0006_people'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch: SQLite cannot add a foreign key to an existing table in place
    with op.batch_alter_table('volunteer') as batch:
        batch.add_column(sa.Column('grid_id', sa.Integer(), nullable=True))
        batch.create_index('ix_volunteer_grid_id', ['grid_id'], unique=False)
        batch.create_foreign_key('fk_volunteer_grid_id_grid', 'grid', ['grid_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('volunteer') as batch:
        batch.drop_constraint('fk_volunteer_grid_id_grid', type_='foreignkey')
        batch.drop_index('ix_volunteer_grid_id')
        batch.drop_column('grid_id')
