"""Capacity: a street office (50 communities, 20,000 devices, 300 reports a day, a storm) on this machine.

Everything real, each in its own process where production has one: a private Mosquitto, a fresh
PostgreSQL database (migrated: monthly partitions), N `linli ingest` replicas, a load generator
publishing the office's device mix, and in this process the Open311 API with the loop (the report
stage: assess → dispatch → notify the assignee through Apprise to a local receiver).

The device mix per community (400 devices), in office time:

    heartbeat only, every 5–10 min   smoke 120, door magnet 60 (+10 door events a day each), SOS 20,
                                     peephole 20, fall alarm 10, patrol checkpoint 10, camera 10,
                                     loudspeaker 4, fire host 2
    telemetry, every 1–5 min         gas 60, manhole 20, fire water pressure 20, lamp post 20
    gates (heartbeat every 5 min)    access gate 16 (3,000 passes a day per community),
                                     vehicle barrier 8 (800 a day); ×3 in rush hours

The run has three phases: normal (40 %), rush hours (30 %), a storm (30 %: `--storm-alarms`
life-safety alarms and `--storm-reports` reports on top of the rush). Office time runs `--speedup`
times faster than wall time, so the offered rate is the office's rate × speedup.

Then **headroom**: ingest stops, a backlog of `--backlog` messages of the same mix is queued at the
broker, ingest restarts and drains it: the rate it drains at is the most this machine sustains, and
headroom = that rate / the office's average (and peak) rate.

Reported: offered vs stored message rate, ingest lag (device timestamp → row written, from the rows),
CPU per process, report → assignee latency, bytes per row of the partitioned tables
(`pg_total_relation_size`) and of the hourly rollup, headroom. Last line: one JSON object.

    .venv/bin/python -m benchmarks.capacity                 # 120 s, speedup 5
    .venv/bin/python -m benchmarks.capacity --seconds 20    # the short development run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAY = 24 * 3600.0
# Per community: device type → count; 400 devices.
HEARTBEAT_TYPES = {"smoke": 120, "door_magnet": 60, "sos_button": 20, "smart_peephole": 20, "fall_alarm": 10,
                   "patrol_checkpoint": 10, "throwing_camera": 10, "loudspeaker": 4, "fire_alarm_host": 2}
TELEMETRY_TYPES = {"gas": 60, "manhole": 20, "fire_water_pressure": 20, "lamp_post": 20}
GATE_TYPES = {"access_gate": 16, "vehicle_barrier": 8}
HEARTBEAT_MEAN_S = 450.0  # uniform 5–10 min
TELEMETRY_MEAN_S = 180.0  # uniform 1–5 min
GATE_HEARTBEAT_S = 300.0
DOOR_EVENTS_PER_DAY = 10
ACCESS_PER_DAY = 3000  # per community
VEHICLE_PER_DAY = 800  # per community
RUSH = 3.0  # gate traffic in rush hours, × the day's average
ALARMS_PER_DAY = 20  # the whole office, outside storms
PHASES = (("normal", 0.4), ("rush", 0.3), ("storm", 0.3))


def office_rates(communities: int, per_community: int) -> dict[str, float]:
    """The office's message rates per second (office time), by stream."""
    scale = communities * per_community / 400
    per = communities * (per_community / 400)
    return {
        "heartbeat": scale * sum(HEARTBEAT_TYPES.values()) / HEARTBEAT_MEAN_S
        + scale * sum(GATE_TYPES.values()) / GATE_HEARTBEAT_S,
        "telemetry": scale * sum(TELEMETRY_TYPES.values()) / TELEMETRY_MEAN_S,
        "door": scale * HEARTBEAT_TYPES["door_magnet"] * DOOR_EVENTS_PER_DAY / DAY,
        "access": per * ACCESS_PER_DAY / DAY,
        "vehicle": per * VEHICLE_PER_DAY / DAY,
        "alarm": ALARMS_PER_DAY / DAY,
    }


# --- the load generator (its own process) ------------------------------------------------------------

@dataclass
class Plan:
    """What the generator publishes: the fleet by stream, rates (office time), speedup and phases."""

    host: str
    port: int
    seconds: float
    speedup: float
    rates: dict[str, float]
    fleet: dict[str, list[list[str]]]  # stream → [code, device_type, community]
    storm_alarms: int
    seed: int = 7
    backlog: int = 0  # > 0: publish this many messages of the mix as fast as possible, then stop


def generate(plan_path: Path, out_path: Path) -> None:
    """Publish the plan; write what was sent (per stream) to `out_path`."""
    from linli.devices.protocol import Kind, topic
    from linli.devices.registry import DEVICE_TYPES
    from linli.devices.simulator import ALARMS, Generator, SimDevice, publisher

    plan = Plan(**json.loads(plan_path.read_text()))
    rng = random.Random(plan.seed)
    fleet = {name: [SimDevice(*d) for d in devices] for name, devices in plan.fleet.items()}
    generator = Generator([d for devices in fleet.values() for d in devices], rng)
    alarmers = [d for d in fleet["heartbeat"] + fleet["telemetry"] if d.device_type in ALARMS]

    def message(stream: str) -> tuple[str, bytes]:
        if stream == "alarm":
            return generator.alarm(rng.choice(alarmers))
        if stream == "heartbeat":
            device = rng.choice(fleet["heartbeat"] if rng.random() < 0.914 else fleet["gates"])
            kind, body = Kind.heartbeat, {"battery": generator._battery(device), "firmware": "1.2.0",
                                          "rssi": -rng.randint(40, 90)}
        elif stream == "telemetry":
            device = rng.choice(fleet["telemetry"])
            spec = DEVICE_TYPES[device.device_type]
            kind, body = Kind.telemetry, {"metrics": {m.name: generator._reading(device, m.name, m.low, m.high)
                                                      for m in spec.metrics}}
        else:
            device = rng.choice(fleet[stream])
            kind, body = Kind.event, generator._event(device)
        return topic(device.community, device.device_type, device.code, kind), json.dumps(
            generator._body(body), ensure_ascii=False).encode()

    client = publisher(plan.host, plan.port, client_id=f"capacity-gen-{os.getpid()}")
    sent: dict[str, int] = {name: 0 for name in plan.rates}
    started = time.perf_counter()
    if plan.backlog:
        total = sum(plan.rates.values())
        streams, weights = list(plan.rates), [plan.rates[s] / total for s in plan.rates]
        infos = []
        for index in range(plan.backlog):
            stream = rng.choices(streams, weights)[0]
            if index >= 20000:  # 16-bit packet ids: keep fewer than 65,536 unacknowledged
                infos[index - 20000].wait_for_publish(timeout=120)
            infos.append(client.publish(*message(stream), qos=1))
            sent[stream] += 1
        for info in infos:
            info.wait_for_publish(timeout=120)
    else:
        owed = {name: 0.0 for name in plan.rates}
        storm_from = plan.seconds * (PHASES[0][1] + PHASES[1][1])
        pending: deque[Any] = deque()
        before = started
        while True:
            now = time.perf_counter()
            elapsed, dt, before = now - started, now - before, now  # what is owed follows the clock, not ticks
            if elapsed >= plan.seconds:
                break
            rush = PHASES[0][1] * plan.seconds <= elapsed
            for stream, rate in plan.rates.items():
                factor = RUSH if rush and stream in ("access", "vehicle") else 1.0
                owed[stream] += rate * factor * plan.speedup * dt
                if stream == "alarm" and elapsed >= storm_from:
                    owed[stream] += plan.storm_alarms * dt / (plan.seconds - storm_from)
                for _ in range(min(int(owed[stream]), 200)):  # a bounded step: phases follow the clock
                    owed[stream] -= 1
                    pending.append(client.publish(*message(stream), qos=1))
                    sent[stream] += 1
            while len(pending) > 20000:  # 16-bit packet ids: keep fewer than 65,536 unacknowledged
                pending.popleft().wait_for_publish(timeout=60)
            while pending and pending[0].is_published():
                pending.popleft()
            time.sleep(0.01)
        for info in pending:
            info.wait_for_publish(timeout=60)
    seconds = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    out_path.write_text(json.dumps({"sent": sent, "seconds": seconds}))


# --- measuring ----------------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu() -> float:
    """This process's CPU seconds (the API, the loop, the receiver, the report poster)."""
    times = os.times()
    return times.user + times.system


def counters(port: int) -> dict[str, Any] | None:
    """An ingest replica's counters from its status port."""
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
        return dict(json.loads(r.read()))
    return None


class Replicas:
    """N `linli ingest` processes, each with a status port."""

    def __init__(self, count: int, env: dict[str, str], work: Path) -> None:
        from tests.mqtt_broker import free_port

        self.env, self.work = env, work
        self.ports = [free_port() for _ in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.linli = str(Path(sys.executable).parent / "linli")

    def start(self) -> None:
        """Start every replica; return once each is connected."""
        self.processes = []
        for index, port in enumerate(self.ports):
            log = (self.work / f"ingest-{index}.log").open("ab")
            self.processes.append(subprocess.Popen(
                [self.linli, "ingest", "--client-id", f"capacity-ingest-{index}", "--status-port", str(port),
                 "--report-every", "3600"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = [counters(port) for port in self.ports]
            if all(s and s.get("connected") for s in states):
                return
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.2)
        logs = "\n".join(path.read_text(errors="replace")[-3000:] for path in self.work.glob("ingest-*.log"))
        self.stop()
        raise RuntimeError(f"ingest did not start:\n{logs}")

    def totals(self) -> dict[str, float]:
        """Counters summed over the replicas (lag: the largest)."""
        total: dict[str, float] = {"received": 0, "written": 0, "duplicates": 0, "dead_lettered": 0,
                                   "alarms": 0, "records": 0, "queued": 0, "batches": 0, "db_retries": 0,
                                   "lag_seconds": 0.0}
        for port in self.ports:
            state = counters(port) or {}
            for key in total:
                value = float(state.get(key, 0) or 0)
                total[key] = max(total[key], value) if key == "lag_seconds" else total[key] + value
        return total

    def stop(self) -> None:
        """SIGTERM each replica and wait (it commits and acknowledges what it holds)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def pg_backends(url: str) -> dict[int, float]:
    """PostgreSQL server processes serving this database → their CPU seconds so far."""
    from sqlalchemy import text

    from linli import db

    name = url.rsplit("/", 1)[1]
    with db.engine_for(url).connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": name}).scalars().all()
    return {pid: cpu for pid in pids if (cpu := cpu_seconds(pid)) is not None}


def register_office(url: str, communities: int, per_community: int) -> dict[str, list[list[str]]]:
    """The sample street office plus communities up to `communities`, each with its device mix."""
    from sqlalchemy import insert
    from sqlmodel import select

    from linli import db
    from linli.models import Community, Device, StreetOffice
    from linli.seed import seed_sample

    scale = per_community / 400
    fleet: dict[str, list[list[str]]] = {"heartbeat": [], "telemetry": [], "gates": [], "door": [],
                                         "access": [], "vehicle": []}
    with db.session_scope(db.engine_for(url)) as session:
        seed_sample(session)
        office = session.exec(select(StreetOffice)).first()
        assert office is not None and office.id is not None
        existing = session.exec(select(Community)).all()
        for n in range(len(existing), communities):
            session.add(Community(code=f"C{n + 1:03d}", name=f"第{n + 1}社区", street_office_id=office.id))
        session.flush()
        rows = []
        for community in session.exec(select(Community).order_by(Community.id)).all()[:communities]:
            for group, types in (("heartbeat", HEARTBEAT_TYPES), ("telemetry", TELEMETRY_TYPES), ("gates", GATE_TYPES)):
                for device_type, count in types.items():
                    for i in range(max(1, round(count * scale))):
                        code = f"{community.code}-{device_type}-{i + 1}"
                        rows.append({"code": code, "device_type": device_type, "name": code,
                                     "community_id": community.id, "heartbeat_seconds": 600,
                                     "state": "offline", "firmware": "", "created_at": time_now()})
                        entry = [code, device_type, community.code]
                        fleet[group].append(entry)
                        if device_type == "door_magnet":
                            fleet["door"].append(entry)
                        elif device_type == "access_gate":
                            fleet["access"].append(entry)
                        elif device_type == "vehicle_barrier":
                            fleet["vehicle"].append(entry)
        session.execute(insert(Device), rows)
    return fleet


def time_now() -> Any:
    """Now, UTC-aware."""
    from linli.models import utcnow

    return utcnow()


def lag_percentiles(url: str) -> dict[str, float]:
    """Device timestamp → row written (received_at − ts), seconds, over telemetry and event rows."""
    from sqlalchemy import text

    from linli import db

    with db.engine_for(url).connect() as conn:
        row = conn.execute(text(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY lag), max(lag), count(*) FROM ("
            "SELECT extract(epoch FROM received_at - ts) AS lag FROM telemetry UNION ALL "
            "SELECT extract(epoch FROM received_at - ts) FROM device_event) x")).one()
    p = row[0] or [0, 0, 0]
    return {"p50_s": round(p[0], 3), "p95_s": round(p[1], 3), "p99_s": round(p[2], 3),
            "max_s": round(float(row[1] or 0), 3), "rows": int(row[2])}


def table_rows(url: str) -> dict[str, int]:
    """Rows per message table (what the run stored, before the headroom drain adds more)."""
    from sqlalchemy import text

    from linli import db

    with db.engine_for(url).connect() as conn:
        return {t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() or 0)
                for t in ("telemetry", "device_event", "access_record", "vehicle_record", "dead_letter")}


def sizes(url: str) -> dict[str, dict[str, float]]:
    """Rows, bytes and bytes per row of the partitioned tables and of the hourly rollup."""
    from datetime import timedelta

    from sqlalchemy import text

    from linli import db, telemetry

    engine = db.engine_for(url)
    with engine.begin() as conn:  # roll up everything there is, the open hour included, to size it
        first = conn.execute(text("SELECT min(ts) FROM telemetry")).scalar()
        if first is not None:
            telemetry.rollup_range(conn, telemetry.floor_hour(first),
                                   telemetry.floor_hour(time_now()) + timedelta(hours=1))
        conn.execute(text("ANALYZE"))
    out = {}
    for table in ("telemetry", "device_event", "access_record", "vehicle_record", "telemetry_hourly"):
        size = telemetry.relation_bytes(engine, table)
        # per row from the fullest partition: empty partitions' index root pages would inflate small tables
        with engine.connect() as conn:
            parts = [p.name for p in telemetry.partitions(conn, table)] if telemetry.is_partitioned(conn, table) \
                else [table]
            full = max(((int(conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar() or 0),
                         int(conn.execute(text(f"SELECT pg_total_relation_size('\"{name}\"')")).scalar() or 0))
                        for name in parts), default=(0, 0))
        out[table] = {**size, "bytes_per_row": round(full[1] / full[0], 1) if full[0] else 0}
    return out


# --- the loop: the API and the report stage -------------------------------------------------------------

class Reports:
    """Posts reports to the Open311 API at set times; notes when each assignee's notification arrives."""

    def __init__(self, base: str, key: str, buildings: list[str], arrivals: Any) -> None:
        self.base, self.key, self.buildings, self.arrivals = base, key, buildings, arrivals
        self.started: dict[str, float] = {}
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def post(self, i: int) -> None:
        """One report, in a thread."""
        import httpx

        def one() -> None:
            data = {"api_key": self.key, "service_code": "facility_repair",
                    "description": f"暴雨后{i}号楼下积水，路灯也不亮了",
                    "address_id": self.buildings[i % len(self.buildings)]}
            try:
                with httpx.Client(timeout=120) as http:
                    t0 = time.perf_counter()
                    response = http.post(f"{self.base}/requests.json", data=data)
                response.raise_for_status()
                with self.lock:
                    self.started[response.json()[0]["service_request_id"]] = t0
            except Exception as err:  # noqa: BLE001  (counted: a benchmark must not stop)
                self.errors.append(repr(err))

        thread = threading.Thread(target=one, daemon=True)
        thread.start()
        self.threads.append(thread)


def report_times(seconds: float, speedup: float, per_day: int, storm: int, seed: int) -> list[float]:
    """When (wall seconds from the start) each report is posted: the day's rate, plus the storm's."""
    rng = random.Random(seed)
    times, t = [], 0.0
    rate = per_day / DAY * speedup
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= seconds:
            break
        times.append(t)
    storm_from = seconds * (PHASES[0][1] + PHASES[1][1])
    times += [rng.uniform(storm_from, seconds * 0.97) for _ in range(storm)]
    return sorted(times)


# --- main --------------------------------------------------------------------------------------------------

def main() -> int:  # noqa: PLR0915 (one run, read top to bottom)
    """Run the street office, then the headroom drain; print the figures, JSON last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="Wall seconds of the street-office run.")
    parser.add_argument("--speedup", type=float, default=5, help="Office seconds per wall second (one Python "
                        "publisher offers ~1,000 msg/s QoS 1 on a quiet 2-core machine, far less on a busy one).")
    parser.add_argument("--communities", type=int, default=50)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--reports-per-day", type=int, default=300)
    parser.add_argument("--storm-reports", type=int, default=40, help="Reports filed in the storm phase.")
    parser.add_argument("--storm-alarms", type=int, default=100, help="Life-safety alarms in the storm phase.")
    parser.add_argument("--replicas", type=int, default=1, help="Ingest processes (shared subscription; the "
                        "headroom drain uses the first replica's session).")
    parser.add_argument("--backlog", type=int, default=30_000, help="Messages queued for the headroom drain.")
    parser.add_argument("--generate", nargs=2, metavar=("PLAN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(Path(args.generate[0]), Path(args.generate[1]))
        return 0
    per_community = args.devices // args.communities

    from benchmarks.common import fresh_database
    from benchmarks.report_to_assignee import Arrivals, percentile, prepare, serving
    from tests.mqtt_broker import free_port, run_broker

    work = Path(tempfile.mkdtemp(prefix="linli-capacity-"))
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start",
          flush=True)
    replicas: Replicas | None = None
    try:
        with run_broker(work) as broker, fresh_database("postgresql") as url:
            from linli.receiver import NotificationReceiver

            arrivals = Arrivals()
            receiver = NotificationReceiver(on_message=arrivals.on_message).start()
            env_settings = {"LINLI_DATABASE__URL": url, "LINLI_MQTT__HOST": broker.host,
                            "LINLI_MQTT__PORT": str(broker.port), "LINLI_DATA_DIR": str(work / "data"),
                            "LINLI_NOTIFY__URLS": receiver.apprise_url(),
                            "LINLI_DEVICES__SHARED_GROUP": "capacity" if args.replicas > 1 else "",
                            # no Prefect server here: alarm cases' events are recorded, not sent to anyone's :4200
                            "LINLI_PREFECT__PORT": str(free_port()), "PREFECT_HOME": str(work / "prefect")}
            os.environ.update(env_settings)
            from linli.settings import get_settings

            get_settings.cache_clear()
            settings = get_settings()
            key, buildings = prepare(settings)
            t0 = time.perf_counter()
            fleet = register_office(url, args.communities, per_community)
            devices = sum(len(fleet[g]) for g in ("heartbeat", "telemetry", "gates"))
            print(f"registered {devices:,} devices in {args.communities} communities "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
            rates = office_rates(args.communities, per_community)
            office_avg = sum(rates.values())
            office_peak = office_avg + (RUSH - 1) * (rates["access"] + rates["vehicle"]) + \
                args.storm_alarms / (args.seconds * PHASES[2][1] * args.speedup)
            print(f"the office sends {office_avg:,.1f} msg/s on average, {office_peak:,.1f} msg/s at peak "
                  f"(rush hours and a storm); offered here ×{args.speedup:g}: {office_avg * args.speedup:,.0f} msg/s",
                  flush=True)

            child_env = {**os.environ}
            replicas = Replicas(args.replicas, child_env, work)
            replicas.start()

            from linli import db
            from linli.api import create_app
            from linli.loop import LoopConfig
            from linli.loop.inline import InlineLoop
            from linli.notify import AppriseNotifier

            notifier = AppriseNotifier(timeout_seconds=settings.notify.timeout_seconds)
            bus = InlineLoop(engine=db.get_engine(), config=lambda: LoopConfig.from_settings(settings),
                             notifier=notifier, global_urls=settings.notify.urls, workers=8)
            app = create_app(settings, bus=bus, notifier=notifier, policy_source=lambda: None)

            plan = Plan(host=broker.host, port=broker.port, seconds=args.seconds, speedup=args.speedup,
                        rates={k: v for k, v in rates.items()}, storm_alarms=args.storm_alarms,
                        fleet={k: fleet[k] for k in ("heartbeat", "telemetry", "gates", "door", "access", "vehicle")})
            plan_path, out_path = work / "plan.json", work / "sent.json"
            plan_path.write_text(json.dumps(plan.__dict__))

            with serving(app) as base:
                reports = Reports(base, key, buildings, arrivals)
                schedule = report_times(args.seconds, args.speedup, args.reports_per_day, args.storm_reports, 11)
                cpu_start = {"ingest": [cpu_seconds(p.pid) or 0 for p in replicas.processes],
                             "mosquitto": cpu_seconds(broker.process.pid) or 0, "api_and_loop": self_cpu()}
                pg_start = pg_backends(url)
                began = time.perf_counter()
                generator = subprocess.Popen([sys.executable, "-m", "benchmarks.capacity", "--generate",
                                              str(plan_path), str(out_path)], cwd=ROOT, env=child_env)
                samples, next_report, gen_cpu = [], 0, 0.0
                while generator.poll() is None:
                    elapsed = time.perf_counter() - began
                    while next_report < len(schedule) and schedule[next_report] <= elapsed:
                        reports.post(next_report)
                        next_report += 1
                    gen_cpu = cpu_seconds(generator.pid) or gen_cpu
                    if not samples or elapsed - samples[-1][0] >= 1:
                        samples.append((elapsed, replicas.totals()))
                    time.sleep(0.05)
                wall = time.perf_counter() - began
                # drain: what was offered gets stored
                deadline = time.monotonic() + 60
                sent = json.loads(out_path.read_text())
                offered = sum(sent["sent"].values())
                while time.monotonic() < deadline:
                    totals = replicas.totals()
                    if totals["written"] + totals["duplicates"] + totals["dead_lettered"] >= offered:
                        break
                    time.sleep(0.2)
                drained = time.perf_counter() - began
                for thread in reports.threads:
                    thread.join(60)
                end = time.monotonic() + 120
                while time.monotonic() < end and not set(reports.started) <= set(arrivals.at):
                    time.sleep(0.2)
                totals = replicas.totals()
                cpu = {"ingest": sum((cpu_seconds(p.pid) or 0) - s for p, s in zip(replicas.processes,
                                                                                    cpu_start["ingest"],
                                                                                    strict=True)),
                       "mosquitto": (cpu_seconds(broker.process.pid) or 0) - cpu_start["mosquitto"],
                       "generator": gen_cpu, "api_and_loop": self_cpu() - cpu_start["api_and_loop"]}
                pg_end = pg_backends(url)
                cpu["postgresql"] = sum(v - pg_start.get(pid, 0) for pid, v in pg_end.items())
            bus.close()
            receiver.close()
            lag = lag_percentiles(url)
            rows = table_rows(url)
            stored = totals["written"] + totals["duplicates"]
            lost = offered - int(stored + totals["dead_lettered"])
            batch_lags = [s[1]["lag_seconds"] for s in samples if s[1]["lag_seconds"]]
            peak_queue = max((s[1]["queued"] for s in samples), default=0)
            got = [arrivals.at[n] - t for n, t in reports.started.items() if n in arrivals.at]

            # headroom: the rate ingest drains a backlog of the same mix at
            replicas.stop()
            backlog_plan = Plan(**{**plan.__dict__, "backlog": args.backlog, "seed": 8})
            plan_path.write_text(json.dumps(backlog_plan.__dict__))
            subprocess.run([sys.executable, "-m", "benchmarks.capacity", "--generate", str(plan_path),
                            str(out_path)], cwd=ROOT, env=child_env, check=True)
            # The drain runs in this process (`linli ingest` is the same IngestService): a replica process
            # restarted with a big backlog under this machine's load gets its SUBACK behind thousands of
            # queued messages and gives up after its 10 s start-up wait (see docs/scale.md).
            from linli.devices.ingest import IngestOptions, IngestService
            from linli.devices.writer import BatchWriter

            drain = IngestService(BatchWriter(db.engine_for(url)), IngestOptions(
                host=broker.host, port=broker.port, client_id="capacity-ingest-0", shared_group="",
                batch_size=settings.devices.batch_size, batch_wait=settings.devices.batch_wait_seconds))
            drain.start(wait=300)
            first: tuple[float, float] | None = None
            last = (time.perf_counter(), 0.0)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                state = drain.snapshot()
                done = state["written"] + state["duplicates"] + state["dead_lettered"]
                now = time.perf_counter()
                if done > 0 and first is None:
                    first = (now, done)
                if done > (last[1] if first else -1):
                    last = (now, done)
                if done >= args.backlog:
                    break
                time.sleep(0.05)
            assert first is not None, "ingest drained nothing"
            max_rate = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else 0.0
            drain.stop()
            replicas = None
            problems = [line for path in sorted(work.glob("ingest-*.log"))
                        for line in path.read_text(errors="replace").splitlines() if " ERROR " in line]
            if problems:
                print(f"ingest logged {len(problems)} error line(s), e.g. {problems[0][:400]}", flush=True)
            table_sizes = sizes(url)
    finally:
        if replicas is not None:
            replicas.stop()
        if os.environ.get("CAPACITY_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    offered_rate = offered / sent["seconds"]
    stored_rate = stored / drained
    print(f"\noffered {offered:,} messages in {sent['seconds']:.1f} s = {offered_rate:,.0f} msg/s "
          f"({', '.join(f'{k} {v:,}' for k, v in sent['sent'].items())})")
    print(f"stored  {int(stored):,} (+{int(totals['dead_lettered'])} dead letters) by {drained:.1f} s = "
          f"{stored_rate:,.0f} msg/s; {int(totals['alarms'])} alarms raised; largest ingest queue {int(peak_queue)}")
    print(f"rows: {json.dumps(rows)}")
    print(f"not stored: {lost} (offered − stored − dead letters); ingest counters {json.dumps(totals)}")
    print(f"lag device ts → row (publisher, broker and ingest): p50 {lag['p50_s']:.3f} s · p95 {lag['p95_s']:.3f} s"
          f" · p99 {lag['p99_s']:.3f} s · max {lag['max_s']:.3f} s over {lag['rows']:,} rows")
    receipt_lag = {"median_s": round(statistics.median(batch_lags), 3) if batch_lags else 0.0,
                   "max_s": round(max(batch_lags, default=0.0), 3)}
    print(f"ingest lag receipt → commit (sampled each second): median {receipt_lag['median_s']:.3f} s · "
          f"max {receipt_lag['max_s']:.3f} s")
    print("CPU, % of one core over the run: " + ", ".join(f"{k} {100 * v / wall:.0f} %" for k, v in cpu.items()))
    report_figures: dict[str, Any] = {"posted": len(reports.started), "arrived": len(got),
                                      "errors": len(reports.errors)}
    if got:
        report_figures.update(p50_s=round(statistics.median(got), 3), p95_s=round(percentile(got, 95), 3),
                              max_s=round(max(got), 3))
        print(f"report → assignee ({len(got)} of {len(reports.started)}, inline loop): p50 "
              f"{report_figures['p50_s']:.3f} s · p95 {report_figures['p95_s']:.3f} s · "
              f"max {report_figures['max_s']:.3f} s")
    headroom_avg, headroom_peak = max_rate / office_avg, max_rate / office_peak
    print(f"headroom: ingest drains a {args.backlog:,}-message backlog of the mix at {max_rate:,.0f} msg/s "
          f"= {headroom_avg:,.0f}× the office's average ({office_avg:,.1f} msg/s), "
          f"{headroom_peak:,.0f}× its peak ({office_peak:,.1f} msg/s)")
    for table, size in table_sizes.items():
        print(f"  {table:17s} {int(size['rows']):>9,} rows {size['bytes'] / 1e6:8.1f} MB  "
              f"{size['bytes_per_row']:7.0f} B/row")
    load_end = os.getloadavg()
    print(f"load average at the end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    figures = {
        "benchmark": "capacity", "seconds": args.seconds, "speedup": args.speedup, "devices": devices,
        "communities": args.communities, "replicas": args.replicas,
        "office_avg_msg_per_s": round(office_avg, 1), "office_peak_msg_per_s": round(office_peak, 1),
        "asked_msg_per_s": round(office_avg * args.speedup), "offered_msg_per_s": round(offered_rate),
        "stored_msg_per_s": round(stored_rate), "offered": offered,
        "stored": int(stored), "dead_letters": int(totals["dead_lettered"]), "alarms": int(totals["alarms"]),
        "lost": lost, "device_to_row_lag": lag, "ingest_receipt_to_commit_lag": receipt_lag,
        "cpu_percent_of_core": {k: round(100 * v / wall) for k, v in cpu.items()},
        "reports": report_figures, "max_sustained_msg_per_s": round(max_rate),
        "headroom_vs_avg": round(headroom_avg, 1), "headroom_vs_peak": round(headroom_peak, 1),
        "sizes": table_sizes, "load_start": [round(x, 2) for x in load], "load_end": [round(x, 2) for x in load_end]}
    print(json.dumps(figures, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
