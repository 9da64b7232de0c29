"""telemetry at scale: message tables partitioned by month on PostgreSQL, hourly telemetry aggregates

telemetry, device_event, access_record and vehicle_record become range-partitioned by month of `ts`
on PostgreSQL, keeping their rows: each is renamed aside, a partitioned table is made in its place
(same columns, defaults, sequence, foreign keys and indexes; primary key (id, ts) and the idempotency
key (device_id, msg_key, ts), since a partitioned table's unique keys must hold the partition key),
monthly partitions cover the existing rows and the next months, a DEFAULT partition catches the rest,
the rows move over and the old table is dropped. On SQLite only the idempotency key gains `ts`
(a table rebuild); nothing is partitioned. New table telemetry_hourly on both.

Revision ID: 0008_partitions
Revises: 0007_volunteer_grid
Create Date: 2026-11-25 19:50:00
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import linli.models.base

revision: str = '0008_partitions'
down_revision: str | None = '0007_volunteer_grid'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('telemetry', 'device_event', 'access_record', 'vehicle_record')
MONTHS_AHEAD = 3  # the telemetry-rollup DAG keeps partitions this far ahead afterwards (a setting)


def _month(year: int, month: int, add: int = 0) -> tuple[int, int]:
    index = year * 12 + month - 1 + add
    return index // 12, index % 12 + 1


def _partition(conn: sa.Connection, table: str, year: int, month: int) -> None:
    y2, m2 = _month(year, month, 1)
    conn.execute(sa.text(
        f'CREATE TABLE IF NOT EXISTS "{table}_p{year:04d}_{month:02d}" PARTITION OF "{table}" '
        f"FOR VALUES FROM ('{year:04d}-{month:02d}-01 00:00:00+00') TO ('{y2:04d}-{m2:02d}-01 00:00:00+00')"))


def _to_partitioned(conn: sa.Connection, table: str) -> None:
    old = f'{table}_unpartitioned'
    indexes = conn.execute(sa.text(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() "
        "AND i.tablename = :t AND i.indexname NOT IN (SELECT conname FROM pg_constraint "
        "WHERE conrelid = CAST(:t AS regclass))"), {'t': table}).all()
    constraints = conn.execute(sa.text(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u', 'f')"), {'t': table}).all()
    sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {'t': table}).scalar()
    conn.execute(sa.text(f'ALTER TABLE "{table}" RENAME TO "{old}"'))
    for name, _ in indexes:
        conn.execute(sa.text(f'DROP INDEX "{name}"'))
    for name, _, _ in constraints:
        conn.execute(sa.text(f'ALTER TABLE "{old}" DROP CONSTRAINT "{name}"'))
    conn.execute(sa.text(f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS) PARTITION BY RANGE (ts)'))
    conn.execute(sa.text(f'ALTER SEQUENCE {sequence} OWNED BY "{table}".id'))
    conn.execute(sa.text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY (id, ts)'))
    for name, kind, definition in constraints:
        if kind == 'u':
            conn.execute(sa.text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" UNIQUE (device_id, msg_key, ts)'))
        elif kind == 'f':
            conn.execute(sa.text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}'))
    now = datetime.now(UTC)
    months = {(int(y), int(m)) for y, m in conn.execute(sa.text(
        f'SELECT DISTINCT extract(year FROM ts AT TIME ZONE \'UTC\'), extract(month FROM ts AT TIME ZONE \'UTC\') '
        f'FROM "{old}"')).all()}
    months |= {_month(now.year, now.month, add) for add in range(-1, MONTHS_AHEAD + 1)}
    for year, month in sorted(months):
        _partition(conn, table, year, month)
    conn.execute(sa.text(f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT'))
    conn.execute(sa.text(f'INSERT INTO "{table}" SELECT * FROM "{old}"'))
    conn.execute(sa.text(f'DROP TABLE "{old}"'))
    for _, definition in indexes:  # made on the parent: PostgreSQL makes one per partition
        conn.execute(sa.text(definition))


def _to_plain(conn: sa.Connection, table: str) -> None:
    old = f'{table}_partitioned'
    indexes = conn.execute(sa.text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass))"),
        {'t': table}).all()
    constraints = conn.execute(sa.text(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u', 'f') AND conparentid = 0"),
        {'t': table}).all()
    sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {'t': table}).scalar()
    conn.execute(sa.text(f'ALTER TABLE "{table}" RENAME TO "{old}"'))
    for name, _ in indexes:
        conn.execute(sa.text(f'DROP INDEX "{name}"'))
    for name, _, _ in constraints:
        conn.execute(sa.text(f'ALTER TABLE "{old}" DROP CONSTRAINT "{name}"'))
    conn.execute(sa.text(f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS)'))
    conn.execute(sa.text(f'ALTER SEQUENCE {sequence} OWNED BY "{table}".id'))
    conn.execute(sa.text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY (id)'))
    for name, kind, definition in constraints:
        if kind == 'u':
            conn.execute(sa.text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" UNIQUE (device_id, msg_key)'))
        elif kind == 'f':
            conn.execute(sa.text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}'))
    conn.execute(sa.text(f'INSERT INTO "{table}" SELECT * FROM "{old}"'))
    conn.execute(sa.text(f'DROP TABLE "{old}" CASCADE'))
    for _, definition in indexes:
        conn.execute(sa.text(definition))


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == 'postgresql':
        for table in TABLES:
            _to_partitioned(conn, table)
    else:
        for table in TABLES:
            with op.batch_alter_table(table) as batch:
                batch.drop_constraint(f'uq_{table}_device_msg', type_='unique')
                batch.create_unique_constraint(f'uq_{table}_device_msg', ['device_id', 'msg_key', 'ts'])
    op.create_table('telemetry_hourly',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=40), nullable=False),
    sa.Column('hour', linli.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('min', sa.Float(), nullable=False),
    sa.Column('max', sa.Float(), nullable=False),
    sa.Column('avg', sa.Float(), nullable=False),
    sa.Column('last', sa.Float(), nullable=False),
    sa.Column('last_ts', linli.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('device_id', 'metric', 'hour', name='uq_telemetry_hourly')
    )
    with op.batch_alter_table('telemetry_hourly', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_telemetry_hourly_hour'), ['hour'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('telemetry_hourly', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_telemetry_hourly_hour'))
    op.drop_table('telemetry_hourly')
    conn = op.get_bind()
    if conn.dialect.name == 'postgresql':
        for table in TABLES:
            _to_plain(conn, table)
    else:
        for table in TABLES:
            with op.batch_alter_table(table) as batch:
                batch.drop_constraint(f'uq_{table}_device_msg', type_='unique')
                batch.create_unique_constraint(f'uq_{table}_device_msg', ['device_id', 'msg_key'])
