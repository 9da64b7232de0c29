"""Life-safety alarm latency: device publish → Apprise delivery at a local receiver, under background load.

`linli ingest` runs as its own process (as deployed); ordinary telemetry arrives at --background msg/s
from `mosquitto_pub` processes (benchmarks.common.PubLoad: a Python publisher alone does not reach
5,000 msg/s on a small machine), every message a row to write. This script publishes
gas, smoke, SOS, fall and fire-host alarms from devices with no open alarm, and times each from
publish to the first Apprise message about that device arriving at a real HTTP receiver.
Baseline in the same run: the same alarms with no background load.

Goal (DESIGN.md): p50 < 300 ms and p99 < 1 s under 5,000 msg/s.

    .venv/bin/python -m benchmarks.alarm_latency [--background 5000] [--alarms 90]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.common import PubLoad, fleet, fresh_database, last_line
from linli.devices.simulator import ALARMS, Generator, publisher
from linli.receiver import Message, NotificationReceiver
from linli.settings import REPO_ROOT
from tests.mqtt_broker import free_port, run_broker


def percentile(values: list[float], share: float) -> float:
    """The `share` percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background", type=float, default=5000.0, help="background messages per second")
    parser.add_argument("--alarms", type=int, default=90, help="alarms under load (a third as many idle)")
    parser.add_argument("--ingest-log", default="", help="write the ingest replica's log here")
    parser.add_argument("--every", type=float, default=0.25, help="seconds between alarms")
    parser.add_argument("--load-processes", type=int, default=8, help="mosquitto_pub processes sharing the "
                        "background rate (one device's telemetry topic each)")
    args = parser.parse_args()
    arrivals: dict[str, float] = {}
    lock = threading.Lock()

    def arrived(message: Message) -> None:
        text = json.dumps(message.get("json") or {}, ensure_ascii=False)
        at = time.time()
        with lock:
            for code in pending:
                if code in text and code not in arrivals:
                    arrivals[code] = at

    pending: set[str] = set()
    with tempfile.TemporaryDirectory() as folder, run_broker(Path(folder)) as broker, \
            fresh_database() as url, NotificationReceiver(on_message=arrived) as receiver:
        per_type = 2 + (args.alarms + args.alarms // 3) // (8 * len(ALARMS)) + 1
        devices = fleet(url, buildings=8, per_type=per_type)
        alarmers = [d for d in devices if d.device_type in ALARMS and not d.code.endswith("-1")]
        env = dict(os.environ, LINLI_DATABASE__URL=url, LINLI_MQTT__PORT=str(broker.port),
                   LINLI_DATA_DIR=str(Path(folder) / "data"), LINLI_PREFECT__API_URL="http://127.0.0.1:9/api",
                   LINLI_NOTIFY__URLS=receiver.apprise_url(), LINLI_DEVICES__BATCH_WAIT_SECONDS="0.01")
        status_port = free_port()
        linli = [sys.executable, "-c", "from linli.cli import app; app()"]
        ingest = subprocess.Popen([*linli, "ingest", "--client-id", "bench-ingest", "--status-port",
                                   str(status_port)], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=(Path(args.ingest_log).open("wb") if args.ingest_log else subprocess.DEVNULL))
        background: PubLoad | None = None
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{status_port}/", timeout=1).json().get("connected"):
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            client = publisher(broker.host, broker.port)
            generator = Generator(devices)

            def run(count: int) -> list[float]:
                chosen = [alarmers.pop() for _ in range(count)]
                sent: dict[str, float] = {}
                for device in chosen:
                    with lock:
                        pending.add(device.code)
                    name, payload = generator.alarm(device)
                    sent[device.code] = time.time()
                    client.publish(name, payload, qos=1)
                    time.sleep(args.every)
                time.sleep(3)
                with lock:
                    return [(arrivals[c] - sent[c]) * 1000 for c in sent if c in arrivals]

            idle = run(max(10, args.alarms // 3))
            background = PubLoad(broker.host, broker.port, devices, args.background,
                                 processes=args.load_processes).start()
            # Let the load settle: wait until ingest sees most of the asked rate (or 60 s), so the
            # alarms are timed under the load, not before it.
            settle = time.monotonic() + 60
            last = httpx.get(f"http://127.0.0.1:{status_port}/", timeout=2).json()["received"]
            while time.monotonic() < settle:
                time.sleep(2)
                now = httpx.get(f"http://127.0.0.1:{status_port}/", timeout=2).json()["received"]
                if (now - last) / 2 >= 0.8 * args.background:
                    break
                last = now
            before = httpx.get(f"http://127.0.0.1:{status_port}/", timeout=2).json()
            t0 = time.monotonic()
            loaded = run(args.alarms)
            after = httpx.get(f"http://127.0.0.1:{status_port}/", timeout=2).json()
            elapsed = time.monotonic() - t0
            achieved = (after["received"] - before["received"]) / elapsed
            stored = (after["written"] - before["written"]) / elapsed
            client.disconnect()
            client.loop_stop()
        finally:
            if background is not None:
                background.stop()
            ingest.terminate()
            ingest.wait(timeout=60)
    lost_idle = max(10, args.alarms // 3) - len(idle)
    lost_loaded = args.alarms - len(loaded)
    print(f"idle:   {len(idle)} alarms, p50 {statistics.median(idle):.0f} ms, p99 {percentile(idle, 0.99):.0f} ms")
    print(f"loaded: {len(loaded)} alarms under {achieved:,.0f} msg/s background (asked {args.background:,.0f}; "
          f"ingest stored {stored:,.0f} rows/s), "
          f"p50 {statistics.median(loaded):.0f} ms, p99 {percentile(loaded, 0.99):.0f} ms")
    print(f"ratio p50 loaded / idle: {statistics.median(loaded) / statistics.median(idle):.2f}; "
          f"not delivered: idle {lost_idle}, loaded {lost_loaded}")
    last_line({"benchmark": "alarm_latency", "background_msg_per_s": round(achieved),
               "stored_rows_per_s": round(stored),
               "p50_ms": round(statistics.median(loaded)), "p99_ms": round(percentile(loaded, 0.99)),
               "idle_p50_ms": round(statistics.median(idle)), "idle_p99_ms": round(percentile(idle, 0.99)),
               "alarms": len(loaded), "not_delivered": lost_idle + lost_loaded,
               "goal_p50_ms": 300, "goal_p99_ms": 1000})


if __name__ == "__main__":
    main()
