"""Telemetry at scale: monthly partitions, hourly aggregates, and the one place raw device data expires.

On PostgreSQL the four message tables (telemetry, device_event, access_record, vehicle_record) are
range-partitioned by month of `ts` (migration 0008), one partition per UTC month named
`<table>_pYYYY_MM` plus `<table>_default`, which catches anything else so no insert ever fails.

    ensure_partitions   makes the next months' partitions (moving any of their rows out of the
                        default partition first); run by the telemetry-rollup DAG.
    rollup              writes `telemetry_hourly` (count, min, max, avg, last per device, metric and
                        closed hour) for the hours since the last rollup, again for the last few
                        hours (late messages), upserting: running it twice changes nothing.
    expire              deletes one table's rows older than a cutoff: whole monthly partitions are
                        dropped, only the boundary and default partitions are deleted from; on
                        SQLite a DELETE. Telemetry is rolled up up to the cutoff first, so an hour
                        never loses raw rows before its aggregate exists. `linli.retention.purge`
                        and the telemetry-rollup DAG both expire through here.
    metric_hours / metric_summary
                        what dashboards read: the aggregates, plus the current open hour from raw rows.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects import sqlite
from sqlmodel import Session, SQLModel, col, select

from linli.models import Telemetry, TelemetryHourly, utcnow

PARTITIONED = ("telemetry", "device_event", "access_record", "vehicle_record")
PARTITION_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<year>\d{4})_(?P<month>\d{2})$")
HOUR = timedelta(hours=1)


def _month(year: int, month: int, add: int = 0) -> tuple[int, int]:
    index = year * 12 + month - 1 + add
    return index // 12, index % 12 + 1


def _bound(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}-01 00:00:00+00"


def is_partition_name(name: str | None) -> bool:
    """Whether a table name is one of the monthly or default partitions this module makes."""
    if not name:
        return False
    match = PARTITION_NAME.match(name)
    return (match is not None and match["table"] in PARTITIONED) or name in {f"{t}_default" for t in PARTITIONED}


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Alembic autogenerate hook: partitions are not model tables (the partitioned parent is)."""
    return not (type_ == "table" and is_partition_name(name))


def floor_hour(at: datetime) -> datetime:
    """The start of the UTC hour `at` falls in."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def is_partitioned(conn: Connection, table: str) -> bool:
    """Whether `table` is a partitioned table here (PostgreSQL after migration 0008)."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c "
                                  "ON c.oid = p.partrelid WHERE c.relname = :t "
                                  "AND c.relnamespace = CAST(current_schema() AS regnamespace))"),
                             {"t": table}).scalar())


@dataclass(frozen=True)
class Partition:
    """One monthly partition: its table name and the UTC month it holds."""

    name: str
    year: int
    month: int

    @property
    def start(self) -> datetime:
        """First instant it holds."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """First instant it no longer holds."""
        year, month = _month(self.year, self.month, 1)
        return datetime(year, month, 1, tzinfo=UTC)


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The monthly partitions of `table`, oldest first (the default partition is not listed)."""
    names = conn.execute(text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                              "WHERE i.inhparent = CAST(:t AS regclass)"), {"t": table}).scalars().all()
    found = []
    for name in names:
        match = PARTITION_NAME.match(name)
        if match and match["table"] == table:
            found.append(Partition(name, int(match["year"]), int(match["month"])))
    return sorted(found, key=lambda p: (p.year, p.month))


def ensure_partitions(conn: Connection, *, months_ahead: int = 3, now: datetime | None = None) -> list[str]:
    """Make the partitions of this month and the next `months_ahead` where missing; return the new ones.

    Rows already sitting in the default partition for such a month move into the new partition
    (PostgreSQL refuses to add a partition the default partition holds rows of)."""
    now = now or utcnow()
    made: list[str] = []
    for table in PARTITIONED:
        if not is_partitioned(conn, table):
            continue
        have = {(p.year, p.month) for p in partitions(conn, table)}
        for add in range(months_ahead + 1):
            year, month = _month(now.year, now.month, add)
            if (year, month) in have:
                continue
            name = f"{table}_p{year:04d}_{month:02d}"
            start, end = _bound(year, month), _bound(*_month(year, month, 1))
            conn.execute(text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS)'))
            conn.execute(text(f'WITH moved AS (DELETE FROM "{table}_default" WHERE ts >= CAST(:a AS timestamptz) '
                              f'AND ts < CAST(:b AS timestamptz) RETURNING *) '
                              f'INSERT INTO "{name}" SELECT * FROM moved'),
                         {"a": start, "b": end})
            conn.execute(text(f"ALTER TABLE \"{table}\" ATTACH PARTITION \"{name}\" "
                              f"FOR VALUES FROM ('{start}') TO ('{end}')"))
            made.append(name)
    return made


# --- hourly aggregates --------------------------------------------------------------------------

PG_ROLLUP = text("""
INSERT INTO telemetry_hourly (device_id, metric, hour, count, min, max, avg, last, last_ts)
SELECT t.device_id, m.key, date_trunc('hour', t.ts, 'UTC') AS hour, count(*),
       min(m.value::text::float8), max(m.value::text::float8), avg(m.value::text::float8),
       (array_agg(m.value::text::float8 ORDER BY t.ts DESC, t.id DESC))[1], max(t.ts)
FROM telemetry t CROSS JOIN LATERAL json_each(t.metrics) AS m(key, value)
WHERE t.ts >= :start AND t.ts < :end AND json_typeof(m.value) = 'number'
GROUP BY t.device_id, m.key, date_trunc('hour', t.ts, 'UTC')
ON CONFLICT (device_id, metric, hour) DO UPDATE SET count = excluded.count, min = excluded.min,
    max = excluded.max, avg = excluded.avg, last = excluded.last, last_ts = excluded.last_ts
""")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _rollup_python(conn: Connection, start: datetime, end: datetime) -> int:
    """SQLite: aggregate in Python (the embedded default holds little), then upsert."""
    t = Telemetry.__table__  # type: ignore[attr-defined]
    rows = conn.execute(t.select().with_only_columns(t.c.id, t.c.device_id, t.c.ts, t.c.metrics)
                        .where(t.c.ts >= start, t.c.ts < end).order_by(t.c.ts, t.c.id)).all()
    groups: dict[tuple[int, str, datetime], list[tuple[datetime, float]]] = defaultdict(list)
    for _id, device_id, ts, metrics in rows:
        for name, raw in (metrics or {}).items():
            value = _number(raw)
            if value is not None:
                groups[(device_id, name, floor_hour(ts))].append((ts, value))
    values = []
    for (device_id, name, hour), readings in groups.items():
        numbers = [v for _, v in readings]
        values.append({"device_id": device_id, "metric": name, "hour": hour, "count": len(numbers),
                       "min": min(numbers), "max": max(numbers), "avg": sum(numbers) / len(numbers),
                       "last": readings[-1][1], "last_ts": readings[-1][0]})
    if values:
        h = TelemetryHourly.__table__  # type: ignore[attr-defined]
        insert = sqlite.insert(h)
        conn.execute(insert.on_conflict_do_update(
            index_elements=["device_id", "metric", "hour"],
            set_={c: insert.excluded[c] for c in ("count", "min", "max", "avg", "last", "last_ts")}), values)
    return len(values)


@dataclass(frozen=True)
class RollupResult:
    """What one rollup did: the hours it covered and how many aggregate rows it wrote."""

    start: datetime | None
    end: datetime | None
    rows: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (a DAG step's result)."""
        return {"start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None, "rows": self.rows}


def rollup_range(conn: Connection, start: datetime, end: datetime) -> int:
    """(Re)write the aggregates of the hours in [start, end) — both on hour boundaries; rows written."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(PG_ROLLUP, {"start": start, "end": end}).rowcount or 0)
    return _rollup_python(conn, start, end)


def rollup(conn: Connection, *, now: datetime | None = None, lookback_hours: int = 2,
           max_hours: int = 24 * 7) -> RollupResult:
    """Aggregate the closed hours not rolled up yet (and the last `lookback_hours` again, for late
    messages), at most `max_hours` per call, oldest first. Idempotent: an upsert per device, metric, hour."""
    end = floor_hour(now or utcnow())
    h, t = TelemetryHourly.__table__, Telemetry.__table__  # type: ignore[attr-defined]
    done = conn.execute(h.select().with_only_columns(h.c.hour).order_by(h.c.hour.desc()).limit(1)).scalar()
    first = conn.execute(t.select().with_only_columns(t.c.ts).order_by(t.c.ts).limit(1)).scalar()
    if first is None:
        return RollupResult(None, None, 0)
    start = floor_hour(first) if done is None else max(floor_hour(first), done + HOUR - lookback_hours * HOUR)
    end = min(end, start + max_hours * HOUR)
    if start >= end:
        return RollupResult(start, end, 0)
    return RollupResult(start, end, rollup_range(conn, start, end))


# --- expiry ---------------------------------------------------------------------------------------

def expire(conn: Connection, table: str, before: datetime) -> dict[str, int]:
    """Remove `table`'s rows with ts < before; {"rows": n, "partitions_dropped": k}.

    Telemetry is rolled up to `before` first. Partitioned: partitions wholly before the cutoff are
    dropped, the rest deleted from (only the boundary month and the default partition are touched)."""
    if table == "telemetry":
        _rollup_until(conn, before)
    dropped = rows = 0
    if is_partitioned(conn, table):
        for part in partitions(conn, table):
            if part.end <= before:
                rows += int(conn.execute(text(f'SELECT count(*) FROM "{part.name}"')).scalar() or 0)
                conn.execute(text(f'DROP TABLE "{part.name}"'))
                dropped += 1
    model = SQLModel.metadata.tables[table]
    rows += int(conn.execute(model.delete().where(model.c.ts < before)).rowcount or 0)
    return {"rows": rows, "partitions_dropped": dropped}


def _rollup_until(conn: Connection, before: datetime) -> None:
    """Make sure every hour before `before` that still has raw telemetry is rolled up."""
    h = TelemetryHourly.__table__  # type: ignore[attr-defined]
    t = Telemetry.__table__  # type: ignore[attr-defined]
    first = conn.execute(t.select().with_only_columns(t.c.ts).where(t.c.ts < before)
                         .order_by(t.c.ts).limit(1)).scalar()
    done = conn.execute(h.select().with_only_columns(h.c.hour).order_by(h.c.hour.desc()).limit(1)).scalar()
    if first is None:
        return
    start = floor_hour(first) if done is None else max(floor_hour(first), done + HOUR)
    end = floor_hour(before) + (HOUR if floor_hour(before) < before else timedelta(0))
    if start < end:
        rollup_range(conn, start, end)


def expire_hourly(conn: Connection, before: datetime) -> int:
    """Delete aggregates of hours before `before` (their own, longer retention); rows deleted."""
    h = TelemetryHourly.__table__  # type: ignore[attr-defined]
    return int(conn.execute(h.delete().where(h.c.hour < before)).rowcount or 0)


# --- reads for dashboards and KPIs ------------------------------------------------------------------

@dataclass(frozen=True)
class MetricHour:
    """One hour of one metric of one device (the current hour is partial)."""

    hour: datetime
    count: int
    min: float
    max: float
    avg: float
    last: float


def _raw_hours(session: Session, device_id: int, metric: str, start: datetime, end: datetime) -> list[MetricHour]:
    rows = session.exec(select(Telemetry.ts, Telemetry.metrics).where(
        Telemetry.device_id == device_id, col(Telemetry.ts) >= start, col(Telemetry.ts) < end)
        .order_by(col(Telemetry.ts), col(Telemetry.id))).all()
    by_hour: dict[datetime, list[float]] = defaultdict(list)
    for ts, metrics in rows:
        value = _number((metrics or {}).get(metric))
        if value is not None:
            by_hour[floor_hour(ts)].append(value)
    return [MetricHour(hour, len(v), min(v), max(v), sum(v) / len(v), v[-1]) for hour, v in sorted(by_hour.items())]


def metric_hours(*, session: Session, device_id: int, metric: str, since: datetime,
                 now: datetime | None = None) -> list[MetricHour]:
    """Hourly points of one device's metric from `since` (rounded down to its hour) to now: closed
    hours from `telemetry_hourly`, the open hour (and any closed hour not rolled up yet) from raw rows."""
    now = now or utcnow()
    start = floor_hour(since)
    rolled = session.exec(select(TelemetryHourly).where(
        TelemetryHourly.device_id == device_id, TelemetryHourly.metric == metric,
        col(TelemetryHourly.hour) >= start).order_by(col(TelemetryHourly.hour))).all()
    points = [MetricHour(r.hour, r.count, r.min, r.max, r.avg, r.last) for r in rolled]
    raw_from = (points[-1].hour + HOUR) if points else start
    return points + _raw_hours(session, device_id, metric, raw_from, now + timedelta(microseconds=1))


@dataclass(frozen=True)
class MetricSummary:
    """One device's metric over a span: readings, min, max, mean and the latest value."""

    count: int
    min: float | None
    max: float | None
    avg: float | None
    last: float | None


def metric_summary(*, session: Session, device_id: int, metric: str, since: datetime,
                   now: datetime | None = None) -> MetricSummary:
    """The metric over whole hours since `since` (e.g. the last 7 days), from the hourly aggregates."""
    points = metric_hours(session=session, device_id=device_id, metric=metric, since=since, now=now)
    if not points:
        return MetricSummary(0, None, None, None, None)
    count = sum(p.count for p in points)
    return MetricSummary(count, min(p.min for p in points), max(p.max for p in points),
                         sum(p.avg * p.count for p in points) / count, points[-1].last)


def relation_bytes(engine: Engine, table: str) -> dict[str, int]:
    """PostgreSQL: rows and total bytes (heap, indexes, TOAST) of a table over all its partitions."""
    with engine.connect() as conn:
        rows = int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar() or 0)
        if is_partitioned(conn, table):
            size = conn.execute(text("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_inherits i "
                                     "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:t AS regclass)"),
                                {"t": table}).scalar()
        else:
            size = conn.execute(text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}).scalar()
    return {"rows": rows, "bytes": int(size or 0)}


__all__ = ["PARTITIONED", "MetricHour", "MetricSummary", "Partition", "RollupResult", "ensure_partitions",
           "expire", "expire_hourly", "floor_hour", "is_partitioned", "metric_hours", "metric_summary",
           "include_name", "is_partition_name", "partitions", "relation_bytes", "rollup", "rollup_range"]
