"""Ingest keeps going when the database cuts its connections (what a PostgreSQL restart does to it).

The test database's backends are terminated with `pg_terminate_backend` again and again while a
stream of messages is consumed (safe on the shared PostgreSQL: only this test's database is
touched). Ingest must reconnect by itself and store every message once, acknowledging nothing it
has not committed. The long version, with a real `pg_ctl restart` of a private instance, is
benchmarks/drills/postgres_restart.py.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli import db
from linli.devices.ingest import IngestOptions, IngestService
from linli.devices.simulator import publisher
from linli.devices.writer import BatchWriter, Incoming
from linli.models import DeadLetter, DeviceEvent, Telemetry
from tests.conftest import BACKENDS, PG_ADMIN_URL
from tests.device_factories import devices, message
from tests.mqtt_broker import Broker, mosquitto_path, run_broker

# PostgreSQL only: what these tests look for (NUL refused, connections cut) is PostgreSQL's behaviour.
ON_POSTGRES = pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.skipif(
    "postgresql" not in BACKENDS, reason="needs PostgreSQL at 127.0.0.1:5432 (python -m tests.services)"))],
    indirect=True)

pytestmark = [pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed "
                                 "(run `python -m tests.services` as root)"),
              ON_POSTGRES]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with run_broker(tmp_path) as running:
        yield running


def _terminate(database: str) -> int:
    """Cut every connection to `database` (as a restart would); returns how many."""
    admin = db.make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": database}).scalar()
    admin.dispose()
    return int(killed or 0)


def _terminate_pid(pid: int) -> None:
    admin = db.make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def _cut_mid_batch(engine: Engine, every: int, most: int = 5) -> list[int]:
    """Before every `every`-th statement on `engine`, terminate the backend it is about to run on.

    The loop in the test cuts whatever is connected, but a fast writer is mostly idle between
    batches and its pool replaces a dead idle connection unseen (pre-ping); this cut always lands
    inside a batch's transaction. Returns the pids cut, as they happen.
    """
    cuts: list[int] = []
    count = itertools.count(1)

    @event.listens_for(engine, "before_cursor_execute")
    def cut(conn: Any, *_args: Any) -> None:
        if next(count) % every == 0 and len(cuts) < most:
            pid = conn.connection.dbapi_connection.info.backend_pid
            _terminate_pid(pid)
            cuts.append(pid)

    return cuts


def _rows(engine: Engine) -> int:
    with Session(engine) as session:
        return sum(session.execute(select(func.count()).select_from(m)).scalar_one() for m in (Telemetry, DeviceEvent))


def test_ingest_stores_everything_once_while_its_connections_are_cut(engine: Engine, session: Session,
                                                                     broker: Broker) -> None:
    devices(session, ("G-1", "gas"), ("D-1", "door_magnet"))
    messages = []
    for n in range(3000):
        if n % 2:
            messages.append(message("telemetry", "gas", "G-1", {"id": f"t{n}", "metrics": {"gas_lel": 2.0}}))
        else:
            messages.append(message("event", "door_magnet", "D-1", {"id": f"e{n}", "event": "opened"}))
    ingest_engine = db.make_engine(engine.url.render_as_string(hide_password=False))
    mid_batch = _cut_mid_batch(ingest_engine, every=25)
    service = IngestService(BatchWriter(ingest_engine), IngestOptions(
        host=broker.host, port=broker.port, batch_size=100, batch_wait=0.02, retry_seconds=0.2))
    service.start()
    database = engine.url.database
    assert database
    cut = 0
    try:
        client = publisher(broker.host, broker.port)
        done = threading.Event()

        def publish() -> None:
            for index, (name, payload) in enumerate(messages):
                client.publish(name, payload, qos=1)
                if index % 100 == 99:
                    time.sleep(0.05)
            done.set()

        threading.Thread(target=publish, daemon=True).start()
        while not done.is_set():
            time.sleep(0.3)
            cut += _terminate(database)
        deadline = time.monotonic() + 60
        while _rows(engine) < len(messages) and time.monotonic() < deadline:
            time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    finally:
        service.stop()
        ingest_engine.dispose()
    assert cut > 0 and mid_batch, "no connection was cut: the test proved nothing"
    assert service.counters.db_retries >= len(mid_batch)  # batches failed with their connection, written again
    assert _rows(engine) == len(messages)  # every message once (message ids are unique per device)
    assert _rows(engine) == service.counters.written
    assert service.counters.dead_lettered == 0


def test_a_dead_letter_that_cannot_be_written_does_not_stop_the_writer(engine: Engine, session: Session,
                                                                       broker: Broker) -> None:
    # The writer thread survives any failure of a batch (here: the dead-letter insert itself fails) and
    # writes the batch once the database takes it.
    devices(session, ("G-1", "gas"))
    writer = BatchWriter(engine)
    service = IngestService(writer, IngestOptions(host=broker.host, port=broker.port, retry_seconds=0.1))
    calls = {"n": 0}
    real_write = writer.write

    def flaky(batch: list[Incoming]):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("the database hiccuped in an unforeseen way")
        return real_write(batch)

    writer.write = flaky  # type: ignore[method-assign]
    service.start()
    try:
        client = publisher(broker.host, broker.port)
        client.publish(*message("telemetry", "gas", "G-1", {"id": "m1", "metrics": {"gas_lel": 1.0}}), qos=1)
        client.publish(*message("telemetry", "gas", "G-1", {"id": "m2", "metrics": {"gas_lel": 1.0}}), qos=1)
        deadline = time.monotonic() + 20
        while _rows(engine) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        client.disconnect()
        client.loop_stop()
    finally:
        service.stop()
    assert calls["n"] > 2
    assert _rows(engine) == 2
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(DeadLetter)).scalar_one() == 0
