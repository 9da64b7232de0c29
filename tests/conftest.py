"""Fixtures on real parts: a fresh PostgreSQL database per session (and SQLite beside it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from linli import db
from linli.receiver import NotificationReceiver
from linli.settings import Settings, get_settings
from tests.services import reachable

PG_ADMIN_URL = os.environ.get("LINLI_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_HOST, PG_PORT = "127.0.0.1", 5432
BACKENDS = ["postgresql", "sqlite"] if reachable(PG_HOST, PG_PORT) else ["sqlite"]


def _create_pg_database() -> tuple[str, str]:
    name = f"linli_test_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_pg_database(name: str) -> None:
    admin = db.make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One migrated database per backend for the whole session, dropped afterwards."""
    urls: dict[str, str] = {}
    pg_name = None
    if "postgresql" in BACKENDS:
        pg_name, urls["postgresql"] = _create_pg_database()
    urls["sqlite"] = f"sqlite:///{tmp_path_factory.mktemp('db') / 'linli.db'}"
    for url in urls.values():
        db.upgrade(url)
    yield urls
    for url in urls.values():
        db.engine_for(url).dispose()
    if pg_name:
        _drop_pg_database(pg_name)


def _wipe(engine: Engine) -> None:
    tables = list(reversed(SQLModel.metadata.sorted_tables))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            conn.execute(text("PRAGMA foreign_keys=OFF"))
            for table in tables:
                conn.execute(table.delete())
            conn.execute(text("PRAGMA foreign_keys=ON"))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, database_urls: dict[str, str]) -> Iterator[str]:
    """A clean, migrated database on each backend in turn (tables emptied after the test)."""
    url = database_urls[request.param]
    yield url
    _wipe(db.engine_for(url))


@pytest.fixture
def engine(database_url: str) -> Engine:
    """The engine of the test database."""
    return db.engine_for(database_url)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the test database (commit as the code under test does)."""
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def settings(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for this test, also visible to code that reads them from the environment."""
    monkeypatch.setenv("LINLI_DATABASE__URL", database_url)
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LINLI_NOTIFY__URLS", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server (Prefect's test harness) shared by the tests of one module."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def receiver(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotificationReceiver]:
    """A real HTTP receiver that every notification is also sent to (LINLI_NOTIFY__URLS)."""
    with NotificationReceiver() as rx:
        monkeypatch.setenv("LINLI_NOTIFY__URLS", rx.apprise_url())
        get_settings.cache_clear()
        yield rx
    get_settings.cache_clear()


@pytest.fixture
def dags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder of shipped DAG definitions for this test, with only the testing.* tasks registered."""
    from tests import dag_tasks

    folder = tmp_path / "dags"
    folder.mkdir()
    monkeypatch.setenv("LINLI_DAG__DEFINITIONS_DIR", str(folder))
    monkeypatch.setenv("LINLI_DAG__TASK_MODULES", "tests.dag_tasks")
    get_settings.cache_clear()
    for recorded in (dag_tasks.RECORDED, dag_tasks.SPANS, dag_tasks.ATTEMPTS):
        recorded.clear()
    yield folder
    get_settings.cache_clear()


def send_event(event: str, resource: dict[str, str], payload: dict[str, object]) -> None:
    """Send one event straight to the current Prefect API.

    `prefect.events.emit_event` goes through a process-wide worker that may still hold a client for an
    earlier module's (stopped) test server; a fresh client always reaches this module's server.
    """
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import get_events_client

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(Event(event=event, resource=resource, payload=payload))

    asyncio.run(send())


def pytest_report_header(config: pytest.Config) -> str:
    """Say which databases the suite runs on."""
    if "postgresql" in BACKENDS:
        return "databases: PostgreSQL (fresh database at 127.0.0.1:5432) and SQLite"
    return "databases: SQLite only — PostgreSQL not reachable at 127.0.0.1:5432"
