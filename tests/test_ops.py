"""Operations: `linli up` with real processes, `linli status`, Prometheus metrics and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli import db, supervisor
from linli.api import create_app
from linli.devices.registry import RuleBook
from linli.devices.service import start_ingest
from linli.devices.simulator import publisher
from linli.errors import ConfigurationError
from linli.events import RecordingBus
from linli.logformat import JsonFormatter, configure_logging
from linli.receiver import NotificationReceiver
from linli.settings import REPO_ROOT, OpsSettings, Settings
from linli.supervisor import ProcessSpec, Supervisor, prefect_database
from tests.apiserver import serving
from tests.conftest import BACKENDS, _create_pg_database, _drop_pg_database
from tests.device_factories import devices, message
from tests.factories import seeded
from tests.mqtt_broker import Broker, free_port, mosquitto_path, run_broker

needs_mosquitto = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed "
                                     "(run `python -m tests.services` as root)")


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _publish(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    client = publisher(broker.host, broker.port)
    infos = [client.publish(name, payload, qos=1) for name, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=30)
    client.disconnect()
    client.loop_stop()


# --- the supervisor ------------------------------------------------------------------------------


def test_a_process_killed_is_restarted_and_one_that_keeps_dying_is_reported_down_not_hammered(
        tmp_path: Path) -> None:
    policy = OpsSettings(restart_backoff_seconds=0.1, restart_backoff_max_seconds=60, crash_loop_restarts=3,
                         min_uptime_seconds=5, stop_grace_seconds=5)
    supervisor = Supervisor(log_dir=tmp_path / "logs", state_path=tmp_path / "run" / "up.json", policy=policy)
    env = dict(os.environ)
    sleeper = supervisor.add(ProcessSpec("sleeper", "test", [sys.executable, "-c", "import time; time.sleep(60)"], env))
    crasher = supervisor.add(ProcessSpec("crasher", "test", [sys.executable, "-c",
                                                             "print('boom', flush=True); raise SystemExit(3)"], env))
    stop = threading.Event()
    runner = threading.Thread(target=supervisor.run, args=(stop,), kwargs={"interval": 0.05})
    runner.start()
    try:
        assert sleeper.child is not None
        first_pid = sleeper.child.process.pid
        os.kill(first_pid, signal.SIGKILL)
        _wait(lambda: sleeper.restarts == 1 and sleeper.state == "up", 10, "the killed process to be restarted")
        assert sleeper.child.process.pid != first_pid and sleeper.last_exit == -signal.SIGKILL
        _wait(lambda: crasher.state == "down", 20, "the crash loop to be reported")
        time.sleep(1.0)  # the longest wait (60 s) applies now: no further start in this second
        state = json.loads((tmp_path / "run" / "up.json").read_text())
    finally:
        stop.set()
        runner.join()
        supervisor.stop()
    assert crasher.restarts == 2 and crasher.last_exit == 3  # started 3 times, then left alone
    assert "crash loop" in crasher.detail and "crasher.log" in crasher.detail
    row = next(p for p in state["processes"] if p["name"] == "crasher")
    assert row["state"] == "down" and row["restarts"] == 2 and row["pid"] is None
    assert (tmp_path / "logs" / "crasher.log").read_text().count("boom") == 3
    assert not _alive(sleeper.child.process.pid)
    assert json.loads((tmp_path / "run" / "up.json").read_text())["running"] is False


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(") ", 1)[1][0] != "Z"


def test_up_refuses_a_prefect_server_that_is_not_on_postgresql(tmp_path: Path) -> None:
    assert prefect_database("postgresql://u:p@db:5432/prefect", allow_sqlite=False) == \
        "postgresql+asyncpg://u:p@db:5432/prefect"
    env = dict(os.environ, LINLI_DATA_DIR=str(tmp_path / "data"), LINLI_LANGUAGE="en",
               LINLI_PREFECT__DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}")
    done = subprocess.run([sys.executable, "-m", "linli.cli", "up", "--no-dashboard"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not PostgreSQL" in done.stderr and "--allow-sqlite" in done.stderr
    assert not (tmp_path / "data" / "logs").exists()  # nothing was started


# --- metrics ----------------------------------------------------------------------------------------


@needs_mosquitto
def test_ingest_metrics_count_every_message_batch_and_alarm(
        engine: Engine, session: Session, settings: Settings, tmp_path: Path) -> None:
    devices(session, ("G-1", "gas"))
    total = 300
    good = [message("telemetry", "gas", "G-1", {"id": f"m{i}", "metrics": {"gas_lel": 1.0}}) for i in range(total)]
    leak = message("telemetry", "gas", "G-1", {"id": "leak", "metrics": {"gas_lel": 42.0}})
    with run_broker(tmp_path) as broker, NotificationReceiver() as receiver:
        ingest_settings = settings.model_copy(update={
            "mqtt": settings.mqtt.model_copy(update={"port": broker.port}),
            "notify": settings.notify.model_copy(update={"urls": [receiver.apprise_url()]})})
        port = free_port()
        replica = start_ingest(ingest_settings, client_id="metrics-test", engine=engine, bus=RecordingBus(),
                               status_port=port, rules=RuleBook())
        try:
            _publish(broker, [*good, ("linli/XFL/gas/G-1/telemetry", b"not json"), leak])
            _wait(lambda: replica.service.counters.written + replica.service.counters.dead_lettered >= total + 2,
                  30, "every message to be handled")
            _wait(lambda: bool(receiver.messages), 20, "the alarm's notice")
            _wait(lambda: _samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
                  .get(("linli_ingest_alarm_notify_seconds_count", ())) == 1, 10, "the alarm latency")
            page = httpx.get(f"http://127.0.0.1:{port}/metrics")
            health = httpx.get(f"http://127.0.0.1:{port}/health")
        finally:
            replica.stop()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    samples = _samples(page.text)
    assert samples[("linli_ingest_messages_received_total", ())] == total + 2
    assert samples[("linli_ingest_messages_written_total", ())] == total + 1
    assert samples[("linli_ingest_messages_dead_lettered_total", ())] == 1
    assert samples[("linli_ingest_alarms_total", ())] == 1
    assert samples[("linli_ingest_queue_depth", ())] == 0
    batches = samples[("linli_ingest_batches_total", ())]
    assert batches >= 1 and samples[("linli_ingest_batch_write_seconds_count", ())] == batches  # one per batch
    assert samples[("linli_ingest_batch_write_seconds_sum", ())] > 0
    assert samples[("linli_ingest_alarm_notify_seconds_sum", ())] > 0
    assert health.status_code == 200 and health.json() == {"connected": True}


def test_api_metrics_count_requests_by_route_template_and_status(
        settings: Settings, engine: Engine, session: Session) -> None:
    seeded(session)
    session.commit()
    app = create_app(settings, engine=engine, bus=RecordingBus(), policy_source=lambda: None)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(3):
            assert http.get("/open311/v2/services.json").status_code == 200
        assert http.get("/open311/v2/requests/NO-SUCH-CASE.json").status_code == 404
        assert http.get("/no/such/path").status_code == 404
        page = http.get("/metrics")
        schema = http.get("/open311/v2/openapi.json").json()
    samples = _samples(page.text)
    get = (("method", "GET"),)
    assert samples[("linli_api_requests_total", (*get, ("route", "/open311/v2/services.json"), ("status", "200")))] == 3
    # The route's template, not the case number: one series however many cases exist.
    assert samples[("linli_api_requests_total",
                    (*get, ("route", "/open311/v2/requests/{number}.json"), ("status", "404")))] == 1
    assert samples[("linli_api_requests_total", (*get, ("route", "unmatched"), ("status", "404")))] == 1
    assert samples[("linli_api_request_duration_seconds_count",
                    (*get, ("route", "/open311/v2/services.json"), ("status", "200")))] == 3
    assert not any("NO-SUCH-CASE" in str(key) for key in samples)
    assert "/metrics" not in schema["paths"]  # not part of the Open311 contract


# --- logs -------------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was (configure_logging changes it for the whole process)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("linli", "flows", "tasks", "blocks")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
    logging.captureWarnings(False)


def test_json_log_lines_carry_time_level_logger_message_process_and_extra_fields(restore_logging: None) -> None:
    handler = configure_logging("json", "ingest-3")
    assert isinstance(handler.formatter, JsonFormatter)
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    log = logging.getLogger("linli.devices.test")
    log.info("batch written: %s messages", 200, extra={"batch": 200, "lag_seconds": 0.05})
    logging.getLogger("httpx").info("HTTP Request: chatter")  # others' INFO is not logged
    try:
        raise ValueError("database went away")
    except ValueError:
        log.exception("batch not written")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["message"] == "batch written: 200 messages" and first["level"] == "INFO"
    assert first["logger"] == "linli.devices.test" and first["process"] == "ingest-3" and first["pid"] == os.getpid()
    assert first["batch"] == 200 and first["lag_seconds"] == 0.05 and first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: database went away" in second["exc"]


# --- linli up, end to end ---------------------------------------------------------------------------


def _status(data: Path) -> dict[str, Any]:
    """What `linli status --json` prints (asked in-process: a CLI start costs seconds on a busy machine)."""
    try:
        return supervisor.as_json(*supervisor.status(data))
    except ConfigurationError as err:  # not started yet
        return {"ok": False, "error": str(err)}


def _status_cli(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "linli.cli", "status", "--json"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return {"ok": False, "error": done.stdout + done.stderr}
    assert done.returncode == (0 if report["ok"] else 1), done.stderr  # the exit code says whether all is well
    return dict(report)


def _row(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in report.get("processes", []) if p["name"] == name)


@pytest.fixture
def fresh_pg() -> Iterator[Callable[[], str]]:
    """Make fresh PostgreSQL databases (dropped afterwards)."""
    made: list[str] = []

    def make() -> str:
        name, url = _create_pg_database()
        made.append(name)
        return url

    yield make
    for name in made:
        _drop_pg_database(name)


@needs_mosquitto
@pytest.mark.skipif("postgresql" not in BACKENDS, reason="PostgreSQL is not reachable at 127.0.0.1:5432")
def test_up_runs_the_topology_restarts_a_killed_replica_and_stops_without_orphans(
        tmp_path: Path, fresh_pg: Callable[[], str]) -> None:
    linli_url, prefect_url = fresh_pg(), fresh_pg()
    db.upgrade(linli_url)
    engine = db.make_engine(linli_url)
    with Session(engine, expire_on_commit=False) as session:
        devices(session, ("G-1", "gas"))
    engine.dispose()
    data = tmp_path / "data"
    prefect_port, api_port = free_port(), free_port()
    # The workers serve one small DAG: registering the 14 shipped ones adds a minute on a busy 2-core
    # machine and is the flows' tests' business; this test is about running and restarting processes.
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ops-check.yaml").write_text("name: ops-check\nsteps:\n  one: {task: testing.record, with: {label: up}}\n")
    with run_broker(tmp_path) as broker:
        env = dict(os.environ, LINLI_DATA_DIR=str(data), LINLI_DATABASE__URL=linli_url, LINLI_LANGUAGE="en",
                   LINLI_PREFECT__DATABASE_URL=prefect_url, LINLI_MQTT__PORT=str(broker.port),
                   LINLI_OPS__LOG_FORMAT="json", LINLI_OPS__RESTART_BACKOFF_SECONDS="0.5",
                   LINLI_DAG__DEFINITIONS_DIR=str(dags), LINLI_DAG__TASK_MODULES="tests.dag_tasks")
        env.pop("PREFECT_API_URL", None)
        up_log = (tmp_path / "up.log").open("wb")
        began = time.monotonic()
        up = subprocess.Popen([sys.executable, "-m", "linli.cli", "up", "--workers", "1", "--ingest", "2",
                               "--no-dashboard", "--prefect-port", str(prefect_port), "--api-port", str(api_port),
                               "--ingest-port", "0"], env=env, cwd=REPO_ROOT, stdout=up_log, stderr=subprocess.STDOUT)
        pids: set[int] = set()
        try:
            report: dict[str, Any] = {}

            def healthy() -> bool:
                nonlocal report
                assert up.poll() is None, (tmp_path / "up.log").read_text()
                report = _status(data)
                return bool(report["ok"])

            _wait(healthy, 240, "every process to be up and healthy")
            print(f"healthy after {time.monotonic() - began:.1f} s")
            report = _status_cli(env)  # the command itself: exit 0 when all is well
            names = [p["name"] for p in report["processes"]]
            assert report["ok"], json.dumps(report)
            assert names == ["prefect-server", "worker-1", "ingest-1", "ingest-2", "api"]
            pids |= {p["pid"] for p in report["processes"]}
            state = json.loads((data / "run" / "up.json").read_text())
            metrics = [p["metrics_url"] for p in state["processes"] if p["kind"] == "ingest"]

            total = 200
            _publish(broker, [message("telemetry", "gas", "G-1", {"id": f"m{i}", "metrics": {"gas_lel": 1.0}})
                              for i in range(total)])

            def ingest_sum(name: str) -> float:
                return sum(_samples(httpx.get(url, timeout=5).text)[(name, ())] for url in metrics)

            _wait(lambda: ingest_sum("linli_ingest_messages_written_total") >= total, 60, "the messages written")
            assert ingest_sum("linli_ingest_messages_received_total") == total
            assert ingest_sum("linli_ingest_messages_written_total") == total

            api = f"http://127.0.0.1:{api_port}"
            for _ in range(2):
                assert httpx.get(f"{api}/open311/v2/services/facility_repair.json", timeout=10).status_code == 200
            api_samples = _samples(httpx.get(f"{api}/metrics", timeout=10).text)
            assert api_samples[("linli_api_requests_total", (("method", "GET"), (
                "route", "/open311/v2/services/{code}.json"), ("status", "200")))] == 2

            killed = _row(report, "ingest-1")["pid"]
            os.kill(killed, signal.SIGKILL)

            def restarted() -> bool:
                nonlocal report
                report = _status(data)
                row = _row(report, "ingest-1")
                return bool(row["restarts"] == 1 and row["state"] == "up" and row["health"] == "ok")

            _wait(restarted, 60, "the killed replica to be restarted and healthy")
            print(f"restarted after {time.monotonic() - began:.1f} s")
            assert _row(report, "ingest-1")["pid"] != killed
            assert all(_row(report, n)["restarts"] == 0 for n in names if n != "ingest-1")
            pids |= {p["pid"] for p in report["processes"]}
        finally:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=60)
            finally:
                if up.poll() is None:
                    up.kill()
                up_log.close()
        assert up.returncode == 0, (tmp_path / "up.log").read_text()
    orphans = [pid for pid in pids if _alive(pid)]
    assert not orphans, f"still running after linli up stopped: {orphans}"
    assert not any(_in_group(pid) for pid in pids)  # nor anything the children started
    stopped = _status_cli(env)  # exit 1: nothing runs
    assert stopped["running"] is False and stopped["ok"] is False
    for name in ("ingest-1", "ingest-2", "api", "worker-1"):
        lines = [line for line in (data / "logs" / f"{name}.log").read_text().splitlines() if line.strip()]
        parsed = [json.loads(line) for line in lines]  # every line is one JSON object
        assert parsed and all(p["process"] == name for p in parsed)
    up_lines = [json.loads(line) for line in (tmp_path / "up.log").read_text().splitlines() if line.strip()]
    assert any("ingest-1 died" in line["message"] for line in up_lines)


def _in_group(pgid: int) -> bool:
    """Whether any live process still belongs to the process group `pgid`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False
