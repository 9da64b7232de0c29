"""Telemetry at scale: monthly partitions (PostgreSQL), hourly rollup, expiry, and reads from the aggregates."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli import db, telemetry
from linli.devices.writer import BatchWriter, Incoming
from linli.models import AccessRecord, Telemetry, TelemetryHourly
from linli.retention import RetentionPolicy, purge
from tests.conftest import BACKENDS, _create_pg_database, _drop_pg_database
from tests.device_factories import devices, message

NOW = datetime(2024, 3, 10, 14, 25, tzinfo=UTC)  # far from today: these months belong to these tests


def _count(session: Session, model: type) -> int:
    return session.execute(select(func.count()).select_from(model)).scalar_one()


def _where(engine: Engine, table: str) -> dict[str, int]:
    """Rows per partition of a partitioned table."""
    with engine.connect() as conn:
        return {str(name): int(n) for name, n in conn.execute(text(
            f'SELECT tableoid::regclass::text, count(*) FROM "{table}" GROUP BY 1')).all()}


def _telemetry(engine: Engine, device_id: int, rows: list[tuple[datetime, dict[str, float]]]) -> None:
    with engine.begin() as conn:
        conn.execute(Telemetry.__table__.insert(), [  # type: ignore[attr-defined]
            {"device_id": device_id, "msg_key": f"k{i}", "ts": ts, "received_at": ts, "metrics": metrics}
            for i, (ts, metrics) in enumerate(rows)])


def _raw_hours(rows: list[tuple[datetime, dict[str, float]]], metric: str) -> dict[datetime, list[float]]:
    by_hour: dict[datetime, list[float]] = defaultdict(list)
    for ts, metrics in sorted(rows, key=lambda r: r[0]):
        if metric in metrics:
            by_hour[telemetry.floor_hour(ts)].append(metrics[metric])
    return by_hour


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, not migrated."""
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (partitioning exists only there)")
    name, url = _create_pg_database()
    yield url
    db.engine_for(url).dispose()
    _drop_pg_database(name)


def test_the_migration_partitions_existing_tables_keeping_every_row(pg_url: str) -> None:
    db.upgrade(pg_url, "0007_volunteer_grid")
    engine = db.engine_for(pg_url)
    with Session(engine) as session:
        device_id = devices(session, ("G-1", "gas"))["G-1"].id
        gate_id = devices(session, ("A-1", "access_gate"))["A-1"].id
    old = [(datetime(2023, 5, 3, tzinfo=UTC), {"gas_lel": 1.0}), (datetime(2023, 7, 9, tzinfo=UTC), {"gas_lel": 2.0}),
           (datetime.now(UTC), {"gas_lel": 3.0})]
    _telemetry(engine, device_id, old)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO access_record (device_id, msg_key, ts, method, credential_ref, direction, "
                          "granted) VALUES (:d, 'a1', '2023-05-04T08:00:00Z', 'card', 'C-1', 'in', true)"),
                     {"d": gate_id})
        before = conn.execute(text("SELECT id, msg_key, ts FROM telemetry ORDER BY id")).all()

    db.upgrade(pg_url)

    with engine.connect() as conn:
        assert telemetry.is_partitioned(conn, "telemetry") and telemetry.is_partitioned(conn, "access_record")
        assert conn.execute(text("SELECT id, msg_key, ts FROM telemetry ORDER BY id")).all() == before
    where = _where(engine, "telemetry")
    assert where["telemetry_p2023_05"] == 1 and where["telemetry_p2023_07"] == 1
    assert _where(engine, "access_record") == {"access_record_p2023_05": 1}
    # ingest writes through the partitioned tables, once, and the id sequence carries on
    writer = BatchWriter(engine)
    batch = [Incoming(*message("telemetry", "gas", "G-1", {"id": "new", "metrics": {"gas_lel": 4.0}})),
             Incoming(*message("telemetry", "gas", "G-1", {"id": "far", "ts": datetime(2031, 1, 1, tzinfo=UTC)
                                                           .timestamp(), "metrics": {"gas_lel": 5.0}}))]
    assert writer.write(batch).written == 2 and writer.write(batch).duplicates == 2
    now = datetime.now(UTC)
    where = _where(engine, "telemetry")
    assert where[f"telemetry_p{now:%Y_%m}"] == 2 and where["telemetry_default"] == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT min(id) FROM telemetry WHERE msg_key IN ('new', 'far')")).scalar() > \
            max(row[0] for row in before)
    # the maintenance step makes 2031's partition: the row waiting in the default partition moves into it
    with engine.begin() as conn:
        made = telemetry.ensure_partitions(conn, months_ahead=1, now=datetime(2031, 1, 5, tzinfo=UTC))
    assert "telemetry_p2031_01" in made and "access_record_p2031_02" in made
    assert _where(engine, "telemetry").get("telemetry_p2031_01") == 1
    assert "telemetry_default" not in _where(engine, "telemetry")
    # and back down: plain tables with every row
    db.upgrade(pg_url, "0008_partitions")
    from alembic import command

    command.downgrade(db.alembic_config(pg_url), "0007_volunteer_grid")
    with engine.connect() as conn:
        assert not telemetry.is_partitioned(conn, "telemetry")
        assert conn.execute(text("SELECT count(*) FROM telemetry")).scalar() == 5


def test_a_redelivered_batch_across_months_is_written_once(engine: Engine, session: Session) -> None:
    devices(session, ("G-1", "gas"), ("A-1", "access_gate"))
    stamps = [datetime(2024, 1, 31, 23, 59, tzinfo=UTC), datetime(2024, 2, 1, 0, 1, tzinfo=UTC),
              datetime(2039, 6, 1, tzinfo=UTC)]  # the last month has no partition: the default one
    batch = [Incoming(*message("telemetry", "gas", "G-1", {"id": f"m{i}", "ts": ts.timestamp(),
                                                           "metrics": {"gas_lel": 1.0}}))
             for i, ts in enumerate(stamps)]
    batch.append(Incoming(*message("event", "access_gate", "A-1", {"id": "a1", "ts": stamps[0].timestamp(),
                                                                   "event": "access", "method": "card",
                                                                   "credential_ref": "C-42"})))
    writer = BatchWriter(engine)
    first, again = writer.write(batch), writer.write(batch)
    assert (first.written, first.records) == (4, 1)
    assert (again.written, again.duplicates, again.records) == (0, 4, 0)
    assert _count(session, Telemetry) == 3 and _count(session, AccessRecord) == 1


Rows = list[tuple[datetime, dict[str, float]]]


def _sample(device_id: int, other_id: int) -> tuple[Rows, Rows]:
    mine: Rows = []
    theirs: Rows = []
    for minute in range(0, 4 * 60 + 25, 7):  # 10:00 .. 14:24: four closed hours and the open one
        ts = datetime(2024, 3, 10, 10, tzinfo=UTC) + timedelta(minutes=minute, seconds=minute % 5)
        mine.append((ts, {"gas_lel": round((minute * 37 % 100) / 10, 1), "temperature": 20 + minute % 3}))
        theirs.append((ts, {"gas_lel": 50.0}))
    return mine, theirs


def test_rollup_writes_the_hourly_aggregates_of_closed_hours_once(engine: Engine, session: Session) -> None:
    made = devices(session, ("G-1", "gas"), ("G-2", "gas"))
    device_id, other_id = made["G-1"].id, made["G-2"].id
    mine, theirs = _sample(device_id, other_id)
    _telemetry(engine, device_id, mine)
    _telemetry(engine, other_id, theirs)
    with engine.begin() as conn:
        first = telemetry.rollup(conn, now=NOW)
    assert (first.start, first.end) == (datetime(2024, 3, 10, 10, tzinfo=UTC), datetime(2024, 3, 10, 14, tzinfo=UTC))
    rows = session.exec(select(TelemetryHourly).where(TelemetryHourly.device_id == device_id,  # type: ignore[arg-type]
                                                      TelemetryHourly.metric == "gas_lel")).scalars().all()
    expected = {hour: values for hour, values in _raw_hours(mine, "gas_lel").items() if hour < first.end}
    assert {r.hour: (r.count, r.min, r.max, r.last) for r in rows} == {
        hour: (len(v), min(v), max(v), v[-1]) for hour, v in expected.items()}
    for r in rows:
        assert r.avg == pytest.approx(statistics.mean(expected[r.hour]))
    assert _count(session, TelemetryHourly) == 4 * 2 + 4  # G-1: two metrics, G-2: one, four closed hours
    with engine.begin() as conn:  # again, and again later the same hour: nothing new, nothing changed
        telemetry.rollup(conn, now=NOW)
        telemetry.rollup(conn, now=NOW + timedelta(minutes=20))
    session.expire_all()
    again = session.exec(select(TelemetryHourly).where(TelemetryHourly.device_id == device_id,  # type: ignore[arg-type]
                                                       TelemetryHourly.metric == "gas_lel")).scalars().all()
    assert [(r.hour, r.count, r.avg, r.last) for r in again] == [(r.hour, r.count, r.avg, r.last) for r in rows]
    assert _count(session, TelemetryHourly) == 12


def test_the_kpi_over_days_reads_aggregates_and_equals_the_raw_computation(engine: Engine, session: Session) -> None:
    made = devices(session, ("G-1", "gas"), ("G-2", "gas"))
    mine, theirs = _sample(made["G-1"].id, made["G-2"].id)
    _telemetry(engine, made["G-1"].id, mine)
    _telemetry(engine, made["G-2"].id, theirs)
    with engine.begin() as conn:
        telemetry.rollup(conn, now=NOW - timedelta(hours=1))  # 13:00–14:00 not rolled up yet: read raw
    since = NOW - timedelta(days=7)
    summary = telemetry.metric_summary(session=session, device_id=made["G-1"].id, metric="gas_lel", since=since,
                                       now=NOW)
    values = [m["gas_lel"] for _, m in mine]
    assert (summary.count, summary.min, summary.max, summary.last) == (len(values), min(values), max(values),
                                                                       values[-1])
    assert summary.avg == pytest.approx(statistics.mean(values))
    hours = telemetry.metric_hours(session=session, device_id=made["G-1"].id, metric="gas_lel", since=since, now=NOW)
    assert [(p.hour, p.count) for p in hours] == [(h, len(v)) for h, v in sorted(_raw_hours(mine, "gas_lel").items())]
    # the aggregates really are what is read: after raw rows go, the closed hours still answer
    with engine.begin() as conn:
        telemetry.rollup(conn, now=NOW)
        conn.execute(Telemetry.__table__.delete().where(Telemetry.ts < datetime(2024, 3, 10, 14, tzinfo=UTC)))  # type: ignore[attr-defined]
    kept = telemetry.metric_summary(session=session, device_id=made["G-1"].id, metric="gas_lel", since=since, now=NOW)
    assert (kept.count, kept.min, kept.max, kept.last) == (summary.count, summary.min, summary.max, summary.last)


def test_expiry_drops_old_months_keeps_the_boundary_and_the_aggregates(engine: Engine, session: Session) -> None:
    device_id = devices(session, ("G-1", "gas"))["G-1"].id
    rows = [(datetime(2024, month, day, 12, tzinfo=UTC), {"gas_lel": float(month * 10 + day)})
            for month in (1, 2, 3) for day in (2, 20)]
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # this test's months get their partitions (as the DAG would have made them)
            telemetry.ensure_partitions(conn, months_ahead=2, now=datetime(2024, 1, 1, tzinfo=UTC))
    _telemetry(engine, device_id, rows)
    cutoff = datetime(2024, 2, 10, tzinfo=UTC)
    with engine.begin() as conn:
        gone = telemetry.expire(conn, "telemetry", cutoff)
    assert gone["rows"] == 3  # January's two and 2 February
    left = session.exec(select(Telemetry.ts)).scalars().all()  # type: ignore[call-overload]
    assert sorted(left) == [ts for ts, _ in rows if ts >= cutoff]
    if engine.dialect.name == "postgresql":
        assert gone["partitions_dropped"] == 1
        with engine.connect() as conn:
            names = [p.name for p in telemetry.partitions(conn, "telemetry")]
        assert "telemetry_p2024_01" not in names and "telemetry_p2024_02" in names
    # every expired hour was rolled up before its raw rows went
    hourly = session.exec(select(TelemetryHourly.hour, TelemetryHourly.max)).all()  # type: ignore[call-overload]
    assert {(h, v) for h, v in hourly} >= {(ts, m["gas_lel"]) for ts, m in rows if ts < cutoff}
    # aggregates have their own, longer period
    with engine.begin() as conn:
        assert telemetry.expire_hourly(conn, datetime(2024, 1, 10, tzinfo=UTC)) == 1


def test_the_retention_purge_expires_telemetry_through_the_same_place(engine: Engine, session: Session) -> None:
    device_id = devices(session, ("G-1", "gas"))["G-1"].id
    now = datetime.now(UTC)
    rows = [(now - timedelta(days=100), {"gas_lel": 7.0}), (now - timedelta(days=1), {"gas_lel": 8.0})]
    _telemetry(engine, device_id, rows)
    counts = purge(session, now=now, policy=RetentionPolicy(telemetry_days=90))
    session.commit()
    assert counts["telemetry"] == 1
    assert session.exec(select(Telemetry.metrics)).scalars().all() == [{"gas_lel": 8.0}]  # type: ignore[call-overload]
    kept = session.exec(select(TelemetryHourly.hour, TelemetryHourly.last)).all()  # type: ignore[call-overload]
    assert [(h, v) for h, v in kept] == [(telemetry.floor_hour(rows[0][0]), 7.0)]


def test_the_dag_definition_runs_partitions_rollup_then_expiry() -> None:
    from linli.dag.graph import topological_order
    from linli.dag.registry import load_task_modules
    from linli.dag.sources import load_shipped
    from linli.settings import get_settings

    settings = get_settings()
    dag = load_shipped(settings.dag.definitions_dir, "telemetry-rollup",
                       registry=load_task_modules(settings.dag.task_modules))
    assert [dag.steps[name].task for name in topological_order(dag)] == [
        "telemetry.ensure_partitions", "telemetry.rollup", "telemetry.expire"]
    assert dag.schedule is not None


def test_the_devices_page_charts_a_week_of_telemetry_from_the_aggregates(settings: object, engine: Engine,
                                                                         session: Session) -> None:
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    device_id = devices(session, ("G-1", "gas"))["G-1"].id
    now = datetime.now(UTC)
    rows = [(now - timedelta(days=2, minutes=m), {"gas_lel": float(m)}) for m in (1, 2, 3)]
    rows.append((now - timedelta(minutes=1), {"gas_lel": 9.0}))
    _telemetry(engine, device_id, rows)
    with engine.begin() as conn:
        telemetry.rollup(conn, now=now)
        # the closed hours' raw rows go: the page can only show them from the aggregates
        conn.execute(Telemetry.__table__.delete().where(Telemetry.ts < now - timedelta(days=1)))  # type: ignore[attr-defined]
    page = Path(__file__).resolve().parents[1] / "dashboards" / "views" / "devices.py"
    at = AppTest.from_file(str(page), default_timeout=30).run()
    assert not at.exception, at.exception
    assert "4 条读数 · 最小 1 · 平均 3.75 · 最大 9 · 最新 9" in [c.value for c in at.caption]
