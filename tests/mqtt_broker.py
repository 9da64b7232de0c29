"""A real Mosquitto broker on a free port, for tests and benchmarks (`max_queued_messages 0`, log to stdout)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def mosquitto_path() -> str | None:
    """Where the mosquitto binary is, if installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((path for path in CANDIDATES if Path(path).exists()), None)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    """A running broker."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What the broker wrote so far."""
        return self.log_path.read_text(errors="replace")


def test_config(port: int) -> str:
    """The tests' broker: anonymous, in memory, unlimited queues, logging to stdout."""
    # max_queued_messages 0: the default (1000) drops QoS 1 messages for a slow or absent subscriber.
    # max_inflight_messages 0: ingest acknowledges a batch at a time, so many messages are in flight.
    return (f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n")


@contextmanager
def run_broker(folder: Path, config_for: Callable[[int], str] = test_config) -> Iterator[Broker]:
    """Start Mosquitto on 127.0.0.1:<free port> (`config_for(port)` is its configuration); stop it afterwards."""
    binary = mosquitto_path()
    if binary is None:
        raise RuntimeError("mosquitto is not installed: run `python -m tests.services` as root, "
                           "or apt-get install mosquitto")
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(config_for(port))
    log_path = folder / "mosquitto.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([binary, "-c", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {log_path.read_text(errors='replace')}") from None
                time.sleep(0.05)
        yield Broker("127.0.0.1", port, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
