"""The devices half of `linli demo`: a broker if none answers, ingest, a simulated fleet, and data-hub pushes.

- MQTT: whatever answers at LINLI_MQTT__HOST:PORT, else a Mosquitto started here (when installed);
- `linli ingest`: one replica;
- `linli simulate`: 8 buildings × every device type at 20 msg/s, a life-safety alarm every 45 s,
  2 devices falling silent after a minute (heartbeat 30 s, so they go offline on the dashboard
  once the device-health flow runs); 3 residents living alone watched by their door magnets, one of
  whom never opens the door (the care-watch DAG opens a welfare check for their grid worker);
- a local data-hub receiver (`linli dev receiver`, its log shows each masked batch) saved as the
  data-hub endpoint block `demo-hub` (ID numbers and plates masked): the `datahub-push` deployment
  pushes to it when ingest announces new records (`linli.datahub.pending`) and on its schedule.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from linli.demo import ProcessGroup
from linli.settings import Settings

LINLI = [sys.executable, "-c", "from linli.cli import app; app()"]
DEMO_HUB = "demo-hub"  # the data-hub endpoint block pointing at the demo's local receiver
DEMO_SIGNAL_SECONDS = 10


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _broker(settings: Settings, group: ProcessGroup, env: dict[str, str], announce: Callable[[str], None]) -> bool:
    host, port = settings.mqtt.host, settings.mqtt.port
    if _answers(host, port):
        announce(f"MQTT broker found at {host}:{port}")
        return True
    binary = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    if binary is None:
        announce("no MQTT broker and mosquitto is not installed: the devices part of the demo is off "
                 "(apt-get install mosquitto)")
        return False
    config = settings.data_dir.resolve() / "mosquitto.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    # max_queued_messages 0: the default (1000) drops QoS 1 messages for a slow subscriber.
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                      "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest stdout\n")
    group.start("mosquitto", [binary, "-c", str(config)], env)
    deadline = time.monotonic() + 10
    while not _answers(host, port):
        group.check()
        if time.monotonic() > deadline:
            announce(f"mosquitto did not start on {port}: the devices part of the demo is off")
            return False
        time.sleep(0.1)
    announce(f"Mosquitto started on {host}:{port}")
    return True


def start_devices(settings: Settings, group: ProcessGroup, env: dict[str, str],
                  announce: Callable[[str], None]) -> None:
    """Start the broker (if needed), ingest, the device simulator, a local data-hub receiver and its endpoint block."""
    if not _broker(settings, group, env, announce):
        return
    env = dict(env, LINLI_MQTT__HOST=settings.mqtt.host, LINLI_MQTT__PORT=str(settings.mqtt.port))
    if "signal_seconds" not in settings.datahub.model_fields_set:
        # The demo's Prefect server runs on SQLite beside everything else, and its simulator writes access
        # records all the time: a push run every 10 s at most leaves the loop's runs room (production: 5 s).
        env["LINLI_DATAHUB__SIGNAL_SECONDS"] = str(DEMO_SIGNAL_SECONDS)
    receiver = settings.datahub.demo_receiver_port
    # Retired on stop: the demo may use this machine's broker, and a session left behind would stay a
    # member of the shared group and be kept a share of a later production ingest's messages.
    group.start("ingest", [*LINLI, "ingest", "--client-id", "linli-demo-ingest", "--retire-on-stop"], env)
    group.start("datahub-receiver", [*LINLI, "dev", "receiver", "--port", str(receiver)], env)
    group.start("device-simulator", [*LINLI, "simulate", "--buildings", "8", "--rate", "20", "--alarm-every", "45",
                                     "--heartbeat", "30", "--mute", "2", "--mute-after", "60",
                                     "--alone", "3", "--silent-alone", "1"], env)
    hub = f"http://127.0.0.1:{receiver}/hub"
    saved = subprocess.run([*LINLI, "datahub", "endpoint", DEMO_HUB, "--url", hub, "--mask", "credential_ref",
                            "--mask", "plate"], env=env, check=False, timeout=120, capture_output=True, text=True)
    if saved.returncode == 0:
        announce(f"devices: ingest, simulator (120 devices); data-hub endpoint block {DEMO_HUB} → {hub} "
                 "(ID numbers and plates masked), pushed by the datahub-push deployment seconds after ingest "
                 "writes records")
    else:
        announce(f"devices: ingest, simulator (120 devices); the data-hub endpoint block could not be saved, "
                 f"nothing is pushed: {saved.stdout[-300:]}{saved.stderr[-300:]}")
    _care_watch_in_background(settings.prefect_api_url, announce)
    announce("care watch: 3 residents living alone, one never opens the door — a welfare check for their grid "
             "worker in about 2 minutes (care-watch DAG; `linli care check` runs it by hand)")


def care_watch_soon(api_url: str, *, delay: float = 90, wait: float = 180) -> bool:
    """Schedule one care-watch run `delay` s from now once its deployment is registered (False if it never is).

    The DAG's own schedule is every 30 minutes from when `flows.serve` started; the demo's silent
    resident should not wait that long to reach their grid worker.
    """
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            found = httpx.post(f"{api_url}/deployments/filter", timeout=5,
                               json={"deployments": {"name": {"any_": ["care-watch"]}}}).json()
            if found:
                at = datetime.now(UTC) + timedelta(seconds=delay)
                response = httpx.post(f"{api_url}/deployments/{found[0]['id']}/create_flow_run", timeout=10, json={
                    "parameters": {}, "state": {"type": "SCHEDULED", "name": "Scheduled",
                                                "state_details": {"scheduled_time": at.isoformat()}}})
                if response.status_code < 300:
                    return True
                # e.g. 503 "database is locked" from Prefect's SQLite server while the demo starts: try again
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        time.sleep(2)
    return False


def _care_watch_in_background(api_url: str, announce: Callable[[str], None]) -> None:
    def kick() -> None:
        if not care_watch_soon(api_url):
            announce("care-watch could not be scheduled early: it runs on its 30-minute schedule "
                     "(or try `linli care check`)")

    threading.Thread(target=kick, name="care-watch-soon", daemon=True).start()
