"""`linli up`: the production topology as local processes, each restarted when it dies; `linli status` reads it.

    linli up ── db upgrade ── prefect-server (PostgreSQL) ──healthy──▶ worker-1…N   (python -m flows.serve)
                                                                      ingest-1…N   (linli ingest, shared subscription)
                                                                      api          (linli api)
                                                                      dashboard    (streamlit)

Each child runs in its own process group with its output in ``LINLI_DATA_DIR/logs/<name>.log``.
A child that dies is started again after a wait that doubles while it keeps dying within
``min_uptime_seconds`` of starting; after ``crash_loop_restarts`` such deaths in a row it is
reported *down* and retried only at the longest wait, so a broken process is not hammered.
The supervisor writes ``LINLI_DATA_DIR/run/up.json`` (pids, states, restarts, probe URLs) whenever
something changes; `linli status` reads it and probes each process over HTTP. On SIGTERM or
Ctrl-C every child's group gets SIGTERM, then SIGKILL after ``stop_grace_seconds``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from linli.demo import Child, dashboard_script, spawn, terminate
from linli.demo_devices import LINLI
from linli.errors import ConfigurationError
from linli.settings import OpsSettings, Settings, child_environment

log = logging.getLogger("linli.up")
STATE_FILE = Path("run") / "up.json"
EARLY_KINDS = ("api", "dashboard")  # started with the Prefect server, not after it


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the topology: how to start it and how `linli status` probes it."""

    name: str
    kind: str  # prefect | worker | ingest | api | dashboard
    args: list[str]
    env: dict[str, str] = field(repr=False, default_factory=dict)
    health_url: str = ""  # answers 200 when healthy
    status_url: str = ""  # JSON counters (ingest)
    metrics_url: str = ""  # Prometheus text


@dataclass
class Supervised:
    """A process under supervision and what happened to it."""

    spec: ProcessSpec
    child: Child | None = None
    state: str = "starting"  # starting (not yet started) | up | restarting | down
    started_at: float = 0.0  # wall clock, for uptime in `linli status`
    started_mono: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0
    restart_at: float = 0.0  # monotonic
    last_exit: int | None = None
    detail: str = ""

    def describe(self) -> dict[str, Any]:
        """This process as one entry of the state file."""
        return {"name": self.spec.name, "kind": self.spec.kind,
                "pid": self.child.process.pid if self.child and self.state == "up" else None,
                "state": self.state, "started_at": self.started_at, "restarts": self.restarts,
                "last_exit": self.last_exit, "detail": self.detail, "health_url": self.spec.health_url,
                "status_url": self.spec.status_url, "metrics_url": self.spec.metrics_url,
                "log": str(self.child.log_path) if self.child else ""}


class Supervisor:
    """Starts processes, restarts the ones that die (with backoff), records their state, stops them all."""

    def __init__(self, *, log_dir: Path, state_path: Path, policy: OpsSettings,
                 extra_state: dict[str, Any] | None = None) -> None:
        self.log_dir = log_dir
        self.state_path = state_path
        self.policy = policy
        self.extra_state = dict(extra_state or {})
        self.processes: list[Supervised] = []
        self.started_at = time.time()
        self._lock = threading.Lock()

    def plan(self, spec: ProcessSpec) -> Supervised:
        """Record a process that will be started (state "starting"): `linli status` shows it from now on."""
        entry = Supervised(spec)
        with self._lock:
            self.processes.append(entry)
        self.write_state()
        return entry

    def start(self, entry: Supervised) -> None:
        """Start a planned process and keep it running from now on."""
        self._spawn(entry)
        self.write_state()

    def add(self, spec: ProcessSpec) -> Supervised:
        """Start a process and keep it running from now on."""
        entry = self.plan(spec)
        self.start(entry)
        return entry

    def _spawn(self, entry: Supervised) -> None:
        entry.child = spawn(entry.spec.name, entry.spec.args, entry.spec.env, self.log_dir)
        entry.started_at, entry.started_mono = time.time(), time.monotonic()
        entry.state = "up"
        log.info("started %s (pid %s)", entry.spec.name, entry.child.process.pid,
                 extra={"child": entry.spec.name, "pid_child": entry.child.process.pid})

    def backoff(self, quick_deaths: int) -> float:
        """Seconds before the next start after `quick_deaths` quick deaths in a row (0: it had run a while)."""
        base, most = self.policy.restart_backoff_seconds, self.policy.restart_backoff_max_seconds
        if quick_deaths >= self.policy.crash_loop_restarts:
            return most
        return min(most, base * 2 ** max(0, quick_deaths - 1))

    def tick(self) -> bool:
        """Notice deaths and restart what is due; True when a state changed."""
        changed = False
        now = time.monotonic()
        for entry in list(self.processes):
            child = entry.child
            if entry.state == "up" and child is not None:
                code = child.process.poll()
                if code is None:
                    continue
                child.log_file.close()
                entry.last_exit = code
                ran = now - entry.started_mono
                entry.quick_deaths = entry.quick_deaths + 1 if ran < self.policy.min_uptime_seconds else 0
                wait = self.backoff(entry.quick_deaths)
                entry.restart_at = now + wait
                if entry.quick_deaths >= self.policy.crash_loop_restarts:
                    entry.state = "down"
                    entry.detail = (f"crash loop: died {entry.quick_deaths} times within "
                                    f"{self.policy.min_uptime_seconds:g} s of starting (exit {code}); "
                                    f"next try in {wait:g} s — see {child.log_path}")
                    log.error("%s keeps dying: %s", entry.spec.name, entry.detail,
                              extra={"child": entry.spec.name, "exit_code": code})
                else:
                    entry.state = "restarting"
                    entry.detail = f"exit {code} after {ran:.1f} s; restart in {wait:g} s"
                    log.warning("%s died (exit %s after %.1f s); restarting in %g s", entry.spec.name, code, ran,
                                wait, extra={"child": entry.spec.name, "exit_code": code})
                changed = True
            elif entry.state in ("restarting", "down") and now >= entry.restart_at:
                entry.restarts += 1
                self._spawn(entry)
                entry.detail = f"restarted after exit {entry.last_exit}"
                changed = True
        return changed

    def state(self, *, running: bool = True) -> dict[str, Any]:
        """What `linli status` reads."""
        with self._lock:
            processes = [entry.describe() for entry in self.processes]
        return {"running": running, "supervisor_pid": os.getpid(), "started_at": self.started_at,
                "written_at": time.time(), **self.extra_state, "processes": processes}

    def write_state(self, *, running: bool = True) -> None:
        """Replace the state file atomically (a reader never sees half a file)."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state(running=running), indent=1))
        os.replace(tmp, self.state_path)

    def run(self, stop: threading.Event, *, interval: float = 0.25) -> None:
        """Supervise until `stop` is set."""
        last_write = time.monotonic()
        while not stop.is_set():
            if self.tick() or time.monotonic() - last_write > 5:
                self.write_state()
                last_write = time.monotonic()
            stop.wait(interval)

    def stop(self) -> None:
        """SIGTERM every child's group (newest first), SIGKILL after the grace; mark the state file stopped."""
        children = [e.child for e in self.processes if e.child is not None and e.state == "up"]
        log.info("stopping %s processes (grace %g s)", len(children), self.policy.stop_grace_seconds)
        terminate(children, self.policy.stop_grace_seconds)
        for entry in self.processes:
            if entry.state == "up":
                entry.detail = "stopped"
            entry.state = "down"  # a crash loop's detail stays: it says why the process was down
        self.write_state(running=False)


# --- the topology ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpOptions:
    """What `linli up` starts, and where."""

    workers: int = 1
    ingest: int = 1
    api: bool = True
    dashboard: bool = True
    allow_sqlite: bool = False
    prefect_port: int = 4200
    api_port: int = 8000
    dashboard_port: int = 8501
    ingest_port: int = 9470  # replica i serves /metrics on ingest_port + i - 1; 0: free ports


def prefect_database(url: str, *, allow_sqlite: bool) -> str:
    """The Prefect server's database URL for asyncpg, or a clear refusal when it is not PostgreSQL."""
    if not url:
        if allow_sqlite:
            return ""
        raise ConfigurationError(
            "LINLI_PREFECT__DATABASE_URL is not set: the Prefect server would run on SQLite, which locks under "
            "several workers", hint="set LINLI_PREFECT__DATABASE_URL=postgresql+asyncpg://user:pass@host:5432/"
            "prefect (or pass --allow-sqlite for a try-out)")
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigurationError(f"LINLI_PREFECT__DATABASE_URL is not a database URL: {err}",
                                 hint="e.g. postgresql+asyncpg://user:pass@host:5432/prefect") from err
    if parsed.get_backend_name() == "postgresql":
        # Prefect's server speaks asyncpg; a psycopg or bare URL names the same database.
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if allow_sqlite and parsed.get_backend_name() == "sqlite":
        return url
    raise ConfigurationError(
        f"LINLI_PREFECT__DATABASE_URL is {parsed.get_backend_name()}, not PostgreSQL",
        hint="point it at a PostgreSQL database (postgresql+asyncpg://…), or pass --allow-sqlite for a try-out")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def topology(settings: Settings, options: UpOptions, prefect_db: str) -> list[ProcessSpec]:
    """Every process of `linli up`, Prefect server first."""
    data_dir = settings.data_dir.resolve()
    prefect_api = f"http://127.0.0.1:{options.prefect_port}/api"
    pinned = settings.model_copy(update={"prefect": settings.prefect.model_copy(
        update={"port": options.prefect_port, "api_url": prefect_api, "database_url": prefect_db})})

    def env(name: str, **extra: str) -> dict[str, str]:
        return child_environment(pinned, LINLI_DATA_DIR=str(data_dir), LINLI_DATABASE__URL=settings.database_url,
                                 LINLI_PREFECT__PORT=str(options.prefect_port), LINLI_PREFECT__API_URL=prefect_api,
                                 LINLI_PREFECT__DATABASE_URL=prefect_db, LINLI_OPS__PROCESS_NAME=name,
                                 LINLI_OPS__LOG_FORMAT=settings.ops.log_format, PYTHONUNBUFFERED="1", **extra)

    specs = [ProcessSpec("prefect-server", "prefect",
                         [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                          "--port", str(options.prefect_port)], env("prefect-server"),
                         health_url=f"{prefect_api}/health")]
    for i in range(1, options.workers + 1):
        # Every worker registers the deployments (an idempotent upsert) and claims runs; the server
        # lets exactly one claimant through, so N workers share the runs.
        specs.append(ProcessSpec(f"worker-{i}", "worker", [sys.executable, "-m", "flows.serve"], env(f"worker-{i}"),
                                 health_url=f"{prefect_api}/deployments/filter"))
    host = socket.gethostname()
    for i in range(1, options.ingest + 1):
        port = options.ingest_port + i - 1 if options.ingest_port else _free_port()
        base = f"http://127.0.0.1:{port}"
        # A client id per replica that survives its restarts: the broker keeps its session (and the
        # messages it had not acknowledged) for it.
        specs.append(ProcessSpec(f"ingest-{i}", "ingest",
                                 [*LINLI, "ingest", "--client-id", f"linli-ingest-{host}-{i}", "--status-port",
                                  str(port), "--report-every", "30"], env(f"ingest-{i}"),
                                 health_url=f"{base}/health", status_url=f"{base}/", metrics_url=f"{base}/metrics"))
    if options.api:
        base = f"http://127.0.0.1:{options.api_port}"
        specs.append(ProcessSpec("api", "api", [*LINLI, "api", "--port", str(options.api_port)], env("api"),
                                 health_url=f"{base}/open311/v2/services.json", metrics_url=f"{base}/metrics"))
    if options.dashboard:
        specs.append(ProcessSpec(
            "dashboard", "dashboard",
            [sys.executable, "-m", "streamlit", "run", str(dashboard_script()), "--server.address", "127.0.0.1",
             "--server.port", str(options.dashboard_port), "--server.headless", "true",
             "--browser.gatherUsageStats", "false"], env("dashboard"),
            health_url=f"http://127.0.0.1:{options.dashboard_port}/_stcore/health"))
    return specs


def wait_healthy(url: str, *, timeout: float, alive: Callable[[], bool], what: str, log_path: Path,
                 stop: threading.Event) -> float:
    """Wait until `url` answers 200 while `alive()` (or until `stop` is set); the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout and not stop.is_set():
        if not alive():
            tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
            raise ConfigurationError(f"{what} stopped while starting", hint=f"see {log_path}:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        stop.wait(0.5)
    if stop.is_set():
        return time.monotonic() - start
    raise ConfigurationError(f"{what} did not answer at {url} within {timeout:.0f} s", hint=f"see {log_path}")


def up(settings: Settings, options: UpOptions, stop: threading.Event,
       announce: Callable[[str], None] = log.info) -> None:
    """Start the topology, supervise it until `stop` is set, then stop every process."""
    from linli import db

    prefect_db = prefect_database(settings.prefect.database_url, allow_sqlite=options.allow_sqlite)
    previous = read_state(settings.data_dir)
    if previous and previous.get("running") and _pid_alive(previous.get("supervisor_pid")):
        raise ConfigurationError(f"linli up already runs with this data directory (pid {previous['supervisor_pid']})",
                                 hint="stop it first (Ctrl-C or kill -TERM <pid>), or use another LINLI_DATA_DIR")
    db.upgrade(settings.database_url)  # once here, before N processes would race to migrate
    data_dir = settings.data_dir.resolve()
    specs = topology(settings, options, prefect_db)
    supervisor = Supervisor(log_dir=data_dir / "logs", state_path=data_dir / STATE_FILE, policy=settings.ops,
                            extra_state={"prefect_api": f"http://127.0.0.1:{options.prefect_port}/api",
                                         "log_dir": str(data_dir / "logs")})
    entries = [supervisor.plan(spec) for spec in specs]
    try:
        server = entries[0]
        supervisor.start(server)
        assert server.child is not None
        # The API and the dashboard need no Prefect to start: they boot while the server does. Workers
        # register with it, and ingest picks its event bus by asking it once, so they wait for it.
        for entry in entries[1:]:
            if entry.spec.kind in EARLY_KINDS:
                supervisor.start(entry)
        took = wait_healthy(specs[0].health_url, timeout=180, what="the Prefect server", log_path=server.child.log_path,
                            stop=stop, alive=lambda: server.child is not None and server.child.process.poll() is None)
        if stop.is_set():
            return
        announce(f"Prefect server up in {took:.1f} s on {specs[0].health_url.removesuffix('/health')}")
        threading.Thread(target=_save_policy_block, args=(specs[0].env,), name="policy-block", daemon=True).start()
        for entry in entries[1:]:
            if entry.spec.kind not in EARLY_KINDS:
                supervisor.start(entry)
        announce("started " + ", ".join(s.name for s in specs[1:]) + f"; logs in {supervisor.log_dir}")
        supervisor.run(stop)
    finally:
        supervisor.stop()


def _save_policy_block(env: dict[str, str]) -> None:
    # The governance-policy block admins edit in the UI, saved with the defaults unless it exists.
    subprocess.run([sys.executable, "-m", "blocks.governance"], env=env, check=False, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- `linli status` ----------------------------------------------------------------------------------


@dataclass
class ProcessStatus:
    """One row of `linli status`."""

    name: str
    kind: str
    pid: int | None
    state: str
    uptime_seconds: float | None
    restarts: int
    health: str  # ok | failing | unknown
    detail: str = ""
    counters: dict[str, Any] = field(default_factory=dict)
    log: str = ""


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The state file of `linli up` in `data_dir`, or None when it never ran here."""
    path = data_dir.resolve() / STATE_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ConfigurationError(f"cannot read {path}: {err}", hint="start `linli up` again") from err


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (dead, not yet reaped by its parent) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _sum_samples(text: str, metric: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == metric)


def _probe(entry: dict[str, Any], deployments: dict[str, str] | None) -> tuple[str, str, dict[str, Any]]:
    """(health, detail, counters) of one process, over HTTP."""
    kind = entry["kind"]
    try:
        if kind == "worker":
            if deployments is None:
                return "failing", "Prefect server not answering", {}
            ready = sum(1 for status in deployments.values() if status == "READY")
            counters = {"deployments_ready": ready, "deployments": len(deployments)}
            healthy = bool(deployments) and ready == len(deployments)
            return ("ok" if healthy else "failing"), "" if healthy else "deployments not ready", counters
        response = httpx.get(entry["health_url"], timeout=3)
        health = "ok" if response.status_code == 200 else "failing"
        detail = "" if health == "ok" else f"{entry['health_url']} answered {response.status_code}"
        counters: dict[str, Any] = {}
        if kind == "ingest" and entry.get("status_url"):
            snap = httpx.get(entry["status_url"], timeout=3).json()
            counters = {key: snap.get(key) for key in ("received", "written", "dead_lettered", "queued",
                                                        "lag_seconds")}
        elif kind == "api" and entry.get("metrics_url"):
            text = httpx.get(entry["metrics_url"], timeout=3).text
            counters = {"requests": int(_sum_samples(text, "linli_api_requests_total"))}
        return health, detail, counters
    except (httpx.HTTPError, ValueError) as err:
        return "failing", f"{type(err).__name__}: {err}", {}


def _deployments(prefect_api: str) -> dict[str, str] | None:
    try:
        found = httpx.post(f"{prefect_api}/deployments/filter", json={}, timeout=3).json()
        return {d["name"]: str(d.get("status")) for d in found}
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def status(data_dir: Path) -> tuple[dict[str, Any], list[ProcessStatus]]:
    """The state of the `linli up` running in `data_dir` and one probed row per process."""
    state = read_state(data_dir)
    if state is None:
        raise ConfigurationError(f"`linli up` has not run with the data directory {data_dir.resolve()}",
                                 hint="start it with `linli up`, or set LINLI_DATA_DIR to the one it uses")
    running = bool(state.get("running")) and _pid_alive(state.get("supervisor_pid"))
    entries = state.get("processes", [])
    now = time.time()
    if not running:
        rows = [ProcessStatus(e["name"], e["kind"], None, "down", None, e.get("restarts", 0), "unknown",
                              "linli up is not running", {}, e.get("log", "")) for e in entries]
        return dict(state, running=False), rows
    deployments = _deployments(state["prefect_api"]) if any(e["kind"] == "worker" for e in entries) else None
    with ThreadPoolExecutor(max_workers=8) as pool:
        probes = list(pool.map(lambda e: _probe(e, deployments) if e["state"] == "up" else ("unknown", "", {}),
                               entries))
    rows = []
    for entry, (health, detail, counters) in zip(entries, probes, strict=True):
        alive = entry["state"] == "up" and _pid_alive(entry.get("pid"))
        rows.append(ProcessStatus(
            entry["name"], entry["kind"], entry.get("pid") if alive else None,
            entry["state"] if entry["state"] != "up" or alive else "restarting",
            now - entry["started_at"] if alive else None, entry.get("restarts", 0),
            health if alive else "unknown", detail or entry.get("detail", ""), counters, entry.get("log", "")))
    return state, rows


def all_ok(running: bool, rows: list[ProcessStatus]) -> bool:
    """True when `linli up` runs and every process is up and healthy."""
    return running and bool(rows) and all(r.state == "up" and r.health == "ok" for r in rows)


def as_json(state: dict[str, Any], rows: list[ProcessStatus]) -> dict[str, Any]:
    """The status for scripts (`linli status --json`)."""
    running = bool(state.get("running"))
    return {"running": running, "ok": all_ok(running, rows), "supervisor_pid": state.get("supervisor_pid"),
            "prefect_api": state.get("prefect_api"), "processes": [asdict(r) for r in rows]}
