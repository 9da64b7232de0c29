"""`linli demo`: a whole street office on this machine — Prefect server, the loop's deployments,
the dashboard and a living sample community — started in order and stopped cleanly."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from linli.errors import ConfigurationError
from linli.settings import Settings, child_environment

log = logging.getLogger(__name__)


@dataclass
class Child:
    """A process the demo started, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Child:
    """Start `args` in its own session (its own process group) with its output appended to <log_dir>/<name>.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return Child(name, process, log_path, log_file)


def _signal_group(child: Child, signum: int) -> None:
    # The whole group: a child's own children (the Prefect server's uvicorn) must not outlive it.
    try:
        os.killpg(child.process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def terminate(children: list[Child], timeout: float = 15) -> None:
    """SIGTERM each child's process group (newest first), then SIGKILL what still runs after `timeout` s."""
    for child in reversed(children):
        if child.process.poll() is None:
            _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in reversed(children):
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.process.wait(5)
        _signal_group(child, signal.SIGKILL)  # what the leader left behind in its group
        child.log_file.close()


@dataclass
class ProcessGroup:
    """Starts child processes in their own sessions and stops them in reverse order."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        """Start `args` with its output in <log_dir>/<name>.log."""
        child = spawn(name, args, env, self.log_dir)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise if a child died: the demo is broken without it."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                tail = child.log_path.read_text(errors="replace")[-1500:]
                raise ConfigurationError(f"{child.name} stopped with exit code {code}",
                                         hint=f"see {child.log_path}:\n{tail}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM each child (newest first), then SIGKILL what is still running after `timeout`."""
        terminate(self.children, timeout)
        self.children.clear()


def wait_http(url: str, *, timeout: float, group: ProcessGroup, what: str) -> float:
    """Wait until `url` answers 200; return the seconds it took. Fails early if a child died."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        group.check()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ConfigurationError(f"{what} did not come up within {timeout:.0f} s at {url}",
                             hint=f"see the logs in {group.log_dir}")


def wait_deployments(api_url: str, names: set[str], *, timeout: float, group: ProcessGroup) -> None:
    """Wait until every named deployment is registered with the Prefect server."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        group.check()
        try:
            found = {d["name"] for d in httpx.post(f"{api_url}/deployments/filter", json={}, timeout=5).json()}
            if names <= found:
                return
        except (httpx.HTTPError, ValueError, TypeError):
            pass
        time.sleep(1)
    raise ConfigurationError("the loop's deployments were not registered in time",
                             hint=f"see {group.log_dir / 'flows.log'}")


def dashboard_script() -> Path:
    """Path of the Streamlit app (found without importing the dashboards package)."""
    spec = importlib.util.find_spec("dashboards")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    script = Path(folders[0]) / "app.py" if folders else None
    if script is None or not script.is_file():
        raise ConfigurationError("the dashboards package is not installed", hint="run `make demo` from the repo")
    return script


LOOP_DEPLOYMENTS = {"report", "assess", "dispatch", "evaluate", "sla-watch"}


def start_stack(settings: Settings, group: ProcessGroup, *, with_dashboard: bool = True,
                announce: object = print) -> None:
    """Start the Prefect server, the loop's deployments and the dashboard; return once all are up."""
    env = child_environment(settings, LINLI_DATA_DIR=str(settings.data_dir.resolve()),
                            LINLI_PREFECT__PORT=str(settings.prefect.port),
                            LINLI_DATABASE__URL=settings.database_url)
    group.start("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(settings.prefect.port)], env)
    took = wait_http(f"{settings.prefect_api_url}/health", timeout=120, group=group, what="the Prefect server")
    announce(f"Prefect server up in {took:.1f} s")  # type: ignore[operator]
    # The governance-policy block admins edit in the UI (saved with the defaults unless it exists).
    subprocess.run([sys.executable, "-m", "blocks.governance"], env=env, check=False, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    group.start("flows", [sys.executable, "-m", "flows.serve"], env)
    __import__("linli.demo_devices", fromlist=["start_devices"]).start_devices(settings, group, env, announce)
    if with_dashboard:
        group.start("dashboard", [sys.executable, "-m", "streamlit", "run", str(dashboard_script()),
                                  "--server.address", "127.0.0.1", "--server.port", str(settings.dashboard.port),
                                  "--server.headless", "true", "--browser.gatherUsageStats", "false"], env)
    wait_deployments(settings.prefect_api_url, LOOP_DEPLOYMENTS, timeout=90, group=group)
    announce("deployments registered: " + ", ".join(sorted(LOOP_DEPLOYMENTS)))  # type: ignore[operator]
    if with_dashboard:
        wait_http(f"http://127.0.0.1:{settings.dashboard.port}/_stcore/health", timeout=60, group=group,
                  what="the dashboard")


def run_until(stop: threading.Event, duration: float | None, group: ProcessGroup) -> None:
    """Block until Ctrl-C, `stop`, or `duration` seconds; check the children as we go."""
    deadline = time.monotonic() + duration if duration else None
    while not stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return
        group.check()
        stop.wait(1)
