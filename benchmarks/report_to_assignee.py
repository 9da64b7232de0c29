"""Benchmark: a resident's report posted to the Open311 API → the assignee's notification at a local receiver.

Two runs over the same API, database and receiver, in one process:

* ``prefect``: the API emits ``linli.case.reported`` to a real Prefect server; a warm runner
  subscribed to Prefect's event stream runs the ``report`` flow (with its assess and dispatch
  subflows and their tasks) in-process; the assignment notification goes out through Apprise.
* ``direct``: the same domain steps (receive → assess → dispatch → deliver) called right after
  the API's commit, without Prefect (`linli.loop.inline.InlineLoop`).

Per report: seconds from the start of the POST to the assignment notification's arrival.
Prints p50/p95/p99 of both, the ratio, and a last line of JSON. Goal: p50 < 5 s through Prefect.

    .venv/bin/python benchmarks/report_to_assignee.py [--reports 200] [--interval 2.0]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import wait_http  # noqa: E402  (run as a script: the repo root goes on the path first)

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NUMBER = re.compile(r"LL-\d{8}-\d{6}")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_up() -> bool:
    """Whether PostgreSQL answers on 127.0.0.1:5432."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), timeout=1):
        return True
    return False


def make_pg_database(prefix: str) -> str:
    """A fresh PostgreSQL database; returns its name."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name


def drop_pg_database(name: str) -> None:
    """Drop a database made by `make_pg_database`."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100), nearest rank."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class Arrivals:
    """Arrival times of assignment notifications at the receiver, by case number."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()

    def on_message(self, message: dict[str, Any]) -> None:
        """Record an assignment notification ('新工单 LL-…' in its title)."""
        now = time.perf_counter()
        body = message.get("json") or {}
        title = str(body.get("title", "")) if isinstance(body, dict) else ""
        found = NUMBER.search(title)
        if found and "新工单" in title:
            with self.lock:
                self.at.setdefault(found.group(0), now)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """uvicorn on a free port in a thread."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/open311/v2"
    finally:
        server.should_exit = True
        thread.join(15)


def post_reports(base: str, key: str, buildings: list[str], count: int, interval: float) -> dict[str, float]:
    """POST `count` reports, one every `interval` s; returns the POST start time per case number."""
    started: dict[str, float] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        data = {"api_key": key, "service_code": "facility_repair", "description": f"{i}号路灯坏了，晚上很黑",
                "address_id": buildings[i % len(buildings)]}
        with httpx.Client(timeout=60) as http:
            t0 = time.perf_counter()
            response = http.post(f"{base}/requests.json", data=data)
        response.raise_for_status()
        with lock:
            started[response.json()[0]["service_request_id"]] = t0

    threads = []
    for i in range(count):
        thread = threading.Thread(target=one, args=(i,), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(interval)
    for thread in threads:
        thread.join(60)
    return started


def wait_all(arrivals: Arrivals, numbers: set[str], timeout: float) -> None:
    """Until every number has arrived, or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with arrivals.lock:
            if numbers <= set(arrivals.at):
                return
        time.sleep(0.2)


def latencies(started: dict[str, float], arrivals: Arrivals) -> tuple[list[float], int]:
    """Seconds POST → arrival per report, and how many never arrived."""
    got = [arrivals.at[n] - t0 for n, t0 in started.items() if n in arrivals.at]
    return got, len(started) - len(got)


class PrefectRunner:
    """A warm runner: subscribes to Prefect's event stream and runs the report flow for each reported case."""

    def __init__(self, concurrency: int = 8) -> None:
        self.loop = asyncio.new_event_loop()
        self.concurrency = concurrency
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.main: concurrent.futures.Future[None] | None = None
        self.ready = threading.Event()
        self.failures: list[str] = []
        self.received: dict[int, float] = {}  # case id → when its reported event reached the runner

    def start(self) -> None:
        """Start consuming in a background thread; return once subscribed."""
        self.thread.start()
        self.main = asyncio.run_coroutine_threadsafe(self._consume(), self.loop)
        if not self.ready.wait(60):
            raise RuntimeError("could not subscribe to Prefect's events")

    async def _consume(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        from flows.dag_runner import run_dag

        gate = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[Any]] = set()

        async def run(case_id: int) -> None:
            async with gate:
                try:
                    await run_dag(dag="report", params={"case_id": case_id})
                except Exception as err:  # noqa: BLE001  (counted and printed: a benchmark must not stop)
                    self.failures.append(f"case {case_id}: {err!r}")

        event_filter = EventFilter(event=EventNameFilter(name=["linli.case.reported"]))
        async with get_events_subscriber(filter=event_filter) as subscriber:
            self.ready.set()
            async for event in subscriber:
                self.received[int(event.payload["case_id"])] = time.perf_counter()
                task = asyncio.create_task(run(int(event.payload["case_id"])))
                running.add(task)
                task.add_done_callback(running.discard)

    def stop(self) -> None:
        """Stop consuming."""
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def main() -> int:
    """Run both modes and print the figures; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--interval", type=float, default=2.0,
                        help="Seconds between two POSTs (2.0: 1,800 reports an hour; one warm runner "
                        "saturates near one report a second on this 2-core machine).")
    parser.add_argument("--deployments", action="store_true",
                        help="Through Prefect the production way instead: the loop's deployments served by "
                        "`flows.serve` (event trigger → deployment run), once per runner in --runners.")
    parser.add_argument("--runners", default="inprocess,process",
                        help="With --deployments: the `LINLI_PREFECT__RUNNER` modes to measure, one after "
                        "another on the same server (inprocess: the warm worker; process: Prefect's serve()).")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="linli-bench-"))
    databases: list[str] = []
    use_pg = pg_up()
    if use_pg:
        linli_db = make_pg_database("linli_bench")
        prefect_db = make_pg_database("linli_bench_prefect")
        databases += [linli_db, prefect_db]
        os.environ["LINLI_DATABASE__URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{linli_db}"
        os.environ["LINLI_PREFECT__DATABASE_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{prefect_db}"
    os.environ["LINLI_DATA_DIR"] = str(work / "data")
    os.environ["LINLI_PREFECT__PORT"] = str(free_port())
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"  # flow-run logs would drown the figures

    from linli.receiver import NotificationReceiver

    arrivals = Arrivals()
    receiver = NotificationReceiver(on_message=arrivals.on_message).start()
    os.environ["LINLI_NOTIFY__URLS"] = receiver.apprise_url()
    server: subprocess.Popen[bytes] | None = None
    results: dict[str, dict[str, float]] = {}
    try:
        from linli.settings import apply_prefect_environment, child_environment, get_settings

        settings = get_settings()
        apply_prefect_environment(settings)
        key, buildings = prepare(settings)
        print(f"Linli database: {'PostgreSQL' if use_pg else 'SQLite'}; {args.reports} reports per run, "
              f"one every {args.interval:g} s", flush=True)

        results["direct"] = run_direct(settings, key, buildings, arrivals, args)
        log = (work / "prefect-server.log").open("wb")
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(settings.prefect.port)], env=child_environment(settings),
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"{settings.prefect_api_url}/health", 120)
        if args.deployments:
            for mode in args.runners.split(","):
                results[mode] = run_deployments(settings, key, buildings, arrivals, args, work, mode)
            results["prefect"] = results[args.runners.split(",")[0]]
        else:
            results["prefect"] = run_prefect(settings, key, buildings, arrivals, args)
    finally:
        receiver.close()
        if server is not None:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(20)
            if server.poll() is None:
                server.kill()
        for name in databases:
            with contextlib.suppress(Exception):
                drop_pg_database(name)
        shutil.rmtree(work, ignore_errors=True)

    prefect, direct = results["prefect"], results["direct"]
    ratio = prefect["p50_s"] / direct["p50_s"] if direct["p50_s"] else float("inf")
    print(f"ratio p50 prefect/direct: {ratio:.1f}×; goal p50 < 5 s through Prefect: "
          f"{'met' if prefect['p50_s'] < 5 else 'NOT met'}")
    figures: dict[str, Any] = {
        "benchmark": "report_to_assignee", "reports": args.reports, "interval_s": args.interval,
        "prefect_path": f"deployments ({args.runners.split(',')[0]})" if args.deployments else "events + warm runner",
        "prefect": prefect, "direct": direct, "ratio_p50": round(ratio, 2), "goal_p50_s": 5,
        "goal_met": prefect["p50_s"] < 5}
    if args.deployments and {"inprocess", "process"} <= set(results):
        speedup = results["process"]["p50_s"] / results["inprocess"]["p50_s"]
        print(f"ratio p50 process-per-run/in-process worker: {speedup:.1f}×")
        figures.update(inprocess=results["inprocess"], process=results["process"],
                       ratio_p50_process_over_inprocess=round(speedup, 2))
    print(json.dumps(figures))
    return 0


def prepare(settings: Any) -> tuple[str, list[str]]:
    """Migrate and seed; staff caps raised so 2 × N reports never wait for capacity; an API key."""
    from sqlmodel import select

    from linli import db
    from linli.apikeys import create_key
    from linli.models import Building, Staff
    from linli.seed import seed_sample

    db.upgrade(settings.database_url)
    with db.session_scope() as session:
        seed_sample(session)
        for staff in session.exec(select(Staff)).all():
            staff.max_open = 100_000
            session.add(staff)
        _row, key = create_key(session, "benchmark")
        buildings = [b.code for b in session.exec(select(Building)).all()]
    return key, buildings


def summarise(mode: str, started: dict[str, float], arrivals: Arrivals, elapsed: float) -> dict[str, float]:
    """Print and return the percentiles of one run."""
    got, missing = latencies(started, arrivals)
    if not got:
        raise RuntimeError(f"{mode}: no assignment notification arrived")
    figures = {"p50_s": round(statistics.median(got), 3), "p95_s": round(percentile(got, 95), 3),
               "p99_s": round(percentile(got, 99), 3), "max_s": round(max(got), 3), "arrived": len(got),
               "missing": missing, "elapsed_s": round(elapsed, 1)}
    print(f"{mode:8s} p50 {figures['p50_s']:.3f} s · p95 {figures['p95_s']:.3f} s · p99 {figures['p99_s']:.3f} s "
          f"· {len(got)} arrived, {missing} missing, {elapsed:.0f} s", flush=True)
    return figures


def run_direct(settings: Any, key: str, buildings: list[str], arrivals: Arrivals, args: Any) -> dict[str, float]:
    """The same path without Prefect: the API runs the report stage right after its commit."""
    from linli import db
    from linli.api import create_app
    from linli.loop import LoopConfig
    from linli.loop.inline import InlineLoop
    from linli.notify import AppriseNotifier

    notifier = AppriseNotifier(timeout_seconds=settings.notify.timeout_seconds)
    bus = InlineLoop(engine=db.get_engine(), config=lambda: LoopConfig.from_settings(settings), notifier=notifier,
                     global_urls=settings.notify.urls, workers=8)
    app = create_app(settings, bus=bus, notifier=notifier, policy_source=lambda: None)
    begin = time.perf_counter()
    with serving(app) as base:
        started = post_reports(base, key, buildings, args.reports, args.interval)
        wait_all(arrivals, set(started), 120)
    bus.close()
    return summarise("direct", started, arrivals, time.perf_counter() - begin)


def run_prefect(settings: Any, key: str, buildings: list[str], arrivals: Arrivals, args: Any) -> dict[str, float]:
    """Through Prefect: event to the server, a subscribed runner runs the report flow, Apprise to the receiver."""
    from linli.api import create_app
    from linli.events import PrefectEventBus

    runner = PrefectRunner()
    runner.start()
    app = create_app(settings, bus=PrefectEventBus())  # reads the policy block (none saved: the defaults)
    begin = time.perf_counter()
    try:
        with serving(app) as base:
            started = post_reports(base, key, buildings, args.reports, args.interval)
            wait_all(arrivals, set(started), 300)
    finally:
        runner.stop()
    if runner.failures:
        print(f"{len(runner.failures)} flow run(s) failed, e.g. {runner.failures[0]}", flush=True)
    figures = summarise("prefect", started, arrivals, time.perf_counter() - begin)
    # Where the time goes: POST → event at the runner, and event → notification (the flows).
    ids = case_ids(started)
    to_event = [runner.received[ids[n]] - t0 for n, t0 in started.items() if ids.get(n) in runner.received]
    flows = [arrivals.at[n] - runner.received[ids[n]] for n in started
             if n in arrivals.at and ids.get(n) in runner.received]
    if to_event and flows:
        figures["post_to_event_p50_s"] = round(statistics.median(to_event), 3)
        figures["event_to_notified_p50_s"] = round(statistics.median(flows), 3)
        print(f"         POST → event at runner p50 {figures['post_to_event_p50_s']:.3f} s · "
              f"event → notified (report flow) p50 {figures['event_to_notified_p50_s']:.3f} s", flush=True)
    return figures


def run_deployments(settings: Any, key: str, buildings: list[str], arrivals: Arrivals, args: Any,
                    work: Path, mode: str) -> dict[str, float]:
    """The production path: event → deployment trigger → `flows.serve` runs the report flow (`mode`: how)."""
    from linli.api import create_app
    from linli.demo import LOOP_DEPLOYMENTS, ProcessGroup, wait_deployments
    from linli.events import PrefectEventBus
    from linli.settings import child_environment

    group = ProcessGroup(work / f"logs-{mode}")
    group.start("flows", [sys.executable, "-m", "flows.serve"],
                child_environment(settings, LINLI_PREFECT__RUNNER=mode))
    try:
        wait_deployments(settings.prefect_api_url, LOOP_DEPLOYMENTS, timeout=120, group=group)
        time.sleep(5)  # the deployment triggers reach the server's automation cache
        app = create_app(settings, bus=PrefectEventBus())
        begin = time.perf_counter()
        with serving(app) as base:
            started = post_reports(base, key, buildings, args.reports, args.interval)
            wait_all(arrivals, set(started), 300)
    finally:
        group.stop()
    return summarise(mode, started, arrivals, time.perf_counter() - begin)


def case_ids(started: dict[str, float]) -> dict[str, int]:
    """Case number → id, from the database."""
    from sqlmodel import col, select

    from linli import db
    from linli.models import Case

    with db.session_scope() as session:
        rows = session.exec(select(Case.number, Case.id).where(col(Case.number).in_(list(started)))).all()
    return {number: case_id for number, case_id in rows if case_id is not None}


if __name__ == "__main__":
    sys.exit(main())
