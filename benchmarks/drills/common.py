"""What the drills share: a private PostgreSQL they may restart, ingest replicas as processes, a paced publisher,
and the count of what was stored by message id."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from benchmarks.common import wait_http
from tests.mqtt_broker import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
LINLI = str(Path(sys.executable).with_name("linli"))


def say(line: str) -> None:
    """A progress line, stamped with the time."""
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


# --- a private PostgreSQL ---------------------------------------------------------------------


def _as_postgres(args: list[str]) -> list[str]:
    """Run as the postgres OS user when we are root (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class PrivatePostgres:
    """A PostgreSQL of our own (initdb into a temp folder, a free port): the drills may restart it."""

    folder: Path
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-w",
                                     "-l", str(self.folder / "postgres.log"), *args]),
                       check=True, timeout=timeout, stdout=subprocess.DEVNULL)

    def create_database(self, name: str) -> str:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def restart(self) -> float:
        """`pg_ctl restart -m fast`: every connection is cut; returns the seconds it took."""
        started = time.perf_counter()
        self.ctl("restart", "-m", "fast", "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1")
        return time.perf_counter() - started


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Start a private PostgreSQL on 127.0.0.1:<free port>; stop it and delete its folder afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="linli-drill-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    pg = PrivatePostgres(folder, free_port())
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                                 "-A", "trust", "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
    with (folder / "data" / "postgresql.conf").open("a") as conf:
        conf.write("fsync = off\nsynchronous_commit = off\nmax_connections = 200\nshared_buffers = 128MB\n")
    pg.ctl("start", "-o", f"-p {pg.port} -k {folder} -c listen_addresses=127.0.0.1")
    try:
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.ctl("stop", "-m", "immediate")
        shutil.rmtree(folder, ignore_errors=True)


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Processes:
    """Processes the drill started (each in its own session), their logs in one folder; all stopped at the end."""

    folder: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                   start_new_session=True)
        self.running[name] = process
        return process

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash or an OOM killer would."""
        process = self.running.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop(self, name: str, timeout: float = 30) -> None:
        process = self.running.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")


def ingest_env(database_url: str, broker_port: int, **extra: str) -> dict[str, str]:
    """The environment of a `linli ingest` replica (no Prefect: alarm events are only recorded)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINLI_")}
    env.update(LINLI_DATABASE__URL=database_url, LINLI_MQTT__HOST="127.0.0.1", LINLI_MQTT__PORT=str(broker_port),
               LINLI_PREFECT__API_URL=f"http://127.0.0.1:{free_port()}/api", LINLI_NOTIFY__URLS="",
               PYTHONUNBUFFERED="1", **extra)
    return env


def start_replica(procs: Processes, name: str, env: dict[str, str], status_port: int) -> None:
    """`linli ingest` with a fixed client id (its persistent session survives a crash); waits until it counts."""
    procs.start(name, [LINLI, "ingest", "--client-id", f"drill-{name}", "--status-port", str(status_port),
                       "--report-every", "5"], env)
    wait_http(f"http://127.0.0.1:{status_port}/", 90)


def counters(status_port: int) -> dict[str, Any]:
    """A replica's counters (empty when it does not answer)."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        return dict(httpx.get(f"http://127.0.0.1:{status_port}/", timeout=2).json())
    return {}


# --- publisher ----------------------------------------------------------------------------------


def stored_counts(database_url: str) -> dict[tuple[str, str], int]:
    """(device code, message id) → how many telemetry and event rows carry it."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT d.code, x.msg_key, count(*) FROM ("
            " SELECT device_id, msg_key FROM telemetry UNION ALL SELECT device_id, msg_key FROM device_event"
            ") x JOIN device d ON d.id = x.device_id GROUP BY d.code, x.msg_key")).all()
    engine.dispose()
    return {(code, key): count for code, key, count in rows}


def tally(published: list[tuple[str, str]], database_url: str) -> dict[str, int]:
    """published, stored, missing and duplicates, counted by message id."""
    counts = stored_counts(database_url)
    wanted = set(published)
    return {"published": len(published), "stored": sum(1 for k in wanted if counts.get(k, 0) > 0),
            "missing": sum(1 for k in wanted if counts.get(k, 0) == 0),
            "duplicates": sum(c - 1 for c in counts.values() if c > 1) + (len(published) - len(wanted))}


def wait_stored(published: list[tuple[str, str]], database_url: str, timeout: float) -> float:
    """Until every published message is stored (or `timeout`); returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if tally(published, database_url)["missing"] == 0:
            break
        time.sleep(2)
    return time.perf_counter() - started


def last_line(figures: dict[str, Any]) -> None:
    """The figures as the one JSON object on the last line."""
    print(json.dumps(figures, ensure_ascii=False), flush=True)


# --- the governance side: Prefect server, the loop's deployments, the intake API ------------------

LOOP_DEPLOYMENTS = {"report", "assess", "dispatch", "evaluate", "sla-watch"}
LATER = ("dispatched", "in_progress", "resolved", "closed")  # "dispatched (or later)"


@dataclass
class Governance:
    """A Prefect server (on `prefect_db`), `python -m flows.serve` and `linli api`, as separate processes."""

    procs: Processes
    env: dict[str, str]
    prefect_port: int
    api_port: int
    api_key: str = ""
    buildings: list[str] = field(default_factory=list)

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def start_prefect(self) -> float:
        started = time.perf_counter()
        self.procs.start("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host",
                                            "127.0.0.1", "--port", str(self.prefect_port)], self.env)
        wait_http(f"{self.prefect_api}/health", 180)
        return time.perf_counter() - started

    def start(self) -> None:
        took = self.start_prefect()
        say(f"Prefect server up in {took:.0f} s")
        self.procs.start("flows", [sys.executable, "-m", "flows.serve"], self.env)
        self.procs.start("api", [LINLI, "api", "--port", str(self.api_port)], self.env)
        self.wait_deployments(180)
        wait_http(f"http://127.0.0.1:{self.api_port}/open311/v2/services.json", 120)
        time.sleep(5)  # the deployments' triggers reach the server's automation cache
        say("deployments registered, API up")

    def wait_deployments(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.procs.running.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.procs.log(name)[-2000:]}")
            with contextlib.suppress(httpx.HTTPError, ValueError, TypeError):
                found = {d["name"] for d in httpx.post(f"{self.prefect_api}/deployments/filter", json={},
                                                       timeout=5).json()}
                if LOOP_DEPLOYMENTS <= found:
                    return
            time.sleep(1)
        raise RuntimeError(f"the loop's deployments were not registered within {timeout:.0f} s")

    def file(self, index: int) -> str | None:
        """File one report through the intake API; its case number (None when the API refused or was away)."""
        data = {"api_key": self.api_key, "service_code": "facility_repair",
                "description": f"演练{index}号：路灯坏了，晚上很黑",
                "address_id": self.buildings[index % len(self.buildings)]}
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            response = httpx.post(f"http://127.0.0.1:{self.api_port}/open311/v2/requests.json", data=data, timeout=60)
            if response.status_code == 201:
                return str(response.json()[0]["service_request_id"])
        return None


class ReportFiler:
    """Files a report through the intake API every `every` s in a thread, as a client would: a refused
    or unanswered call is tried again each second (counted in `refused`)."""

    def __init__(self, gov: Governance, every: float) -> None:
        self.gov, self.every = gov, every
        self.filed: list[tuple[str, float]] = []  # (case number, when filed)
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-reports", daemon=True)

    def start(self) -> ReportFiler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 90) -> None:
        """Stop filing; wait for a call in progress (it may be a client's retry)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def numbers(self) -> list[str]:
        """The case numbers filed so far."""
        return [number for number, _ in self.filed]

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            number = self.gov.file(index)
            while number is None and not self._stop.is_set():
                self.refused += 1
                time.sleep(1)
                number = self.gov.file(index)
            if number:
                self.filed.append((number, time.time()))
            index += 1
            self._stop.wait(self.every)


def governance_env(database_url: str, prefect_database_url: str, work: Path, prefect_port: int,
                   **extra: str) -> dict[str, str]:
    """The environment of the Prefect server, flows.serve and the API (no Apprise URLs: nothing leaves)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINLI_", "PREFECT_"))}
    env.update(LINLI_DATABASE__URL=database_url, LINLI_DATA_DIR=str(work / "data"),
               LINLI_PREFECT__PORT=str(prefect_port), LINLI_PREFECT__API_URL=f"http://127.0.0.1:{prefect_port}/api",
               LINLI_PREFECT__DATABASE_URL=prefect_database_url, LINLI_NOTIFY__URLS="",
               PREFECT_HOME=str(work / "prefect"), PREFECT_API_URL=f"http://127.0.0.1:{prefect_port}/api",
               PREFECT_API_DATABASE_CONNECTION_URL=prefect_database_url, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false", DO_NOT_TRACK="1", PREFECT_LOGGING_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS="5", **extra)
    return env


def prepare_linli(database_url: str) -> tuple[str, list[str]]:
    """Migrate and seed Linli's database; staff caps raised (capacity never holds a case); an API key."""
    from sqlmodel import select

    from linli import db
    from linli.apikeys import create_key
    from linli.models import Building, Staff
    from linli.seed import seed_sample

    db.upgrade(database_url)
    with db.session_scope(db.engine_for(database_url)) as session:
        seed_sample(session)
        for staff in session.exec(select(Staff)).all():
            staff.max_open = 100_000
            session.add(staff)
        _row, key = create_key(session, "drill")
        buildings = [b.code for b in session.exec(select(Building)).all()]
    return key, buildings


def case_statuses(database_url: str, numbers: list[str]) -> dict[str, str]:
    """Case number → status."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text('SELECT number, status FROM "case" WHERE number = ANY(:n)'), {"n": numbers}).all()
    engine.dispose()
    return {number: str(status) for number, status in rows}


def wait_cases(database_url: str, numbers: list[str], timeout: float) -> tuple[dict[str, str], float]:
    """Until every case is dispatched or later (or `timeout`); the statuses and the seconds waited."""
    started = time.perf_counter()
    statuses: dict[str, str] = {}
    while time.perf_counter() - started < timeout:
        statuses = case_statuses(database_url, numbers)
        if len(statuses) == len(numbers) and all(s in LATER for s in statuses.values()):
            break
        time.sleep(2)
    return statuses, time.perf_counter() - started
