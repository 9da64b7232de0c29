"""What the benchmarks share: a fresh database (PostgreSQL when it answers, else SQLite), a broker, a fleet."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from linli import db
from linli.devices.registry import DEVICE_TYPES
from linli.devices.simulator import ALARMS, Generator, SimDevice, equip
from tests.services import reachable

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def fresh_database(kind: str = "auto") -> Iterator[str]:
    """A migrated, empty database: 'postgresql', 'sqlite' or 'auto' (PostgreSQL when it answers); dropped after."""
    use_pg = kind == "postgresql" or (kind == "auto" and reachable("127.0.0.1", 5432))
    if not use_pg:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            db.upgrade(url)
            yield url
            db.engine_for(url).dispose()
        return
    name = f"linli_bench_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        db.upgrade(url)
        yield url
    finally:
        db.engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fleet(url: str, *, buildings: int = 4, per_type: int = 1) -> list[SimDevice]:
    """The sample community with devices of every type, registered in the database at `url`."""
    with db.session_scope(db.engine_for(url)) as session:
        return equip(session, buildings=buildings, per_type=per_type)


def last_line(figures: dict[str, Any]) -> None:
    """Print the figures as the one JSON object on the last line."""
    print(json.dumps(figures, ensure_ascii=False))


def wait_http(url: str, timeout: float) -> None:
    """Until `url` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class PubLoad:
    """Background telemetry from `mosquitto_pub -l` processes (Mosquitto's C client) at `rate` msg/s in all.

    One process per device — up to `processes` devices whose type reports metrics and raises no
    life-safety alarm — publishes each line it reads to that device's telemetry topic at QoS 1; a thread
    writes the lines (each reading with its own message id) at the asked pace. A Python paho publisher
    tops out near 1,000–2,000 msg/s on a small machine, well short of the 5,000 msg/s the goals name.
    `published` holds (device code, message id) of every line written; `stop()` closes the processes'
    input and waits: mosquitto_pub exits 0 once every QoS 1 message was acknowledged by the broker.
    """

    def __init__(self, host: str, port: int, devices: list[SimDevice], rate: float, *, processes: int = 8) -> None:
        if shutil.which("mosquitto_pub") is None:
            raise RuntimeError("mosquitto_pub not found: install the mosquitto-clients package")
        self.devices = [d for d in devices if DEVICE_TYPES[d.device_type].metrics
                        and d.device_type not in ALARMS][:processes]
        if not self.devices:
            raise ValueError("no device in the fleet reports metrics without raising alarms")
        self.host, self.port, self.rate = host, port, rate
        self.published: list[tuple[str, str]] = []
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, seconds: float | None = None) -> PubLoad:
        """Start the processes and the feeding thread (for `seconds`, or until `stop()`)."""
        generator = Generator(self.devices)
        for device in self.devices:
            name, _ = generator.telemetry(device)
            self._procs.append(subprocess.Popen(
                ["mosquitto_pub", "-h", self.host, "-p", str(self.port), "-q", "1", "-l", "-M", "200",
                 "-i", f"load-{uuid.uuid4().hex[:8]}", "-t", name],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self._thread = threading.Thread(target=self._feed, args=(generator, seconds), name="pubload", daemon=True)
        self._thread.start()
        return self

    def _feed(self, generator: Generator, seconds: float | None) -> None:
        tick, owed = 0.01, 0.0
        started = next_at = time.perf_counter()
        while not self._stop.is_set() and (seconds is None or time.perf_counter() - started < seconds):
            owed += self.rate * tick
            lines: list[list[bytes]] = [[] for _ in self._procs]
            while owed >= 1:
                owed -= 1
                i = len(self.published) % len(self._procs)
                device = self.devices[i]
                _, payload = generator.telemetry(device)
                lines[i].append(payload + b"\n")
                self.published.append((device.code, generator.last_id))
            for proc, batch in zip(self._procs, lines, strict=True):
                if batch:
                    assert proc.stdin is not None
                    proc.stdin.write(b"".join(batch))
                    proc.stdin.flush()
            next_at += tick
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        self.seconds = time.perf_counter() - started

    def join(self) -> None:
        """Until the feeding ends (its `seconds` have passed, or `stop()`)."""
        if self._thread is not None:
            self._thread.join()

    def stop(self, timeout: float = 120) -> list[int]:
        """Stop feeding, let each process deliver what it has and exit; their exit codes (0: all acknowledged)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.close()
        codes = []
        for proc in self._procs:
            try:
                codes.append(proc.wait(timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes

    @property
    def achieved_rate(self) -> float:
        """Lines written per second while feeding."""
        return len(self.published) / self.seconds if self.seconds else 0.0
