"""What the DAG runner costs: one 20-step process run as a YAML DAG and as a hand-written Prefect flow.

Both run the same async task 20 times in 4 layers of 5 concurrent steps, each step taking its
upstream's result, against the same Prefect server, alternating, in one process. The server runs
on a fresh PostgreSQL database when one is reachable at 127.0.0.1:5432 (Prefect's SQLite server
answers "database is locked" under this write load and adds seconds of retries to random runs),
else it is Prefect's test harness on SQLite. Prints both median run times and the ratio; the last
line is JSON. Goal: the DAG adds under 10 %.

    .venv/bin/python benchmarks/dag_overhead.py [--runs 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

LAYERS, WIDTH = 4, 5


def definition_yaml() -> str:
    """The 20-step process in YAML: layer n step i takes the result of layer n-1 step i."""
    lines = ["name: bench-20", "description: 20 steps, 4 layers of 5.", "steps:"]
    for layer in range(LAYERS):
        for i in range(WIDTH):
            name = f"l{layer}_s{i}"
            if layer == 0:
                lines.append(f"  {name}: {{task: bench.work, with: {{value: {i}}}}}")
            else:
                up = f"l{layer - 1}_s{i}"
                lines.append(f"  {name}: {{task: bench.work, after: [{up}], "
                             f"with: {{value: \"{{{{ steps.{up}.result }}}}\"}}}}")
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_server(home: Path) -> Iterator[str]:
    """A Prefect server on a fresh PostgreSQL database, for this run only; yields its API URL."""
    import httpx
    from sqlalchemy import create_engine, text

    name = f"linli_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    port = _free_port()
    env = dict(os.environ, PREFECT_HOME=str(home),
               PREFECT_API_DATABASE_CONNECTION_URL=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
    log = (home / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(240):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the Prefect server did not start; see {home / 'server.log'}")
        yield url
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """PostgreSQL-backed when PostgreSQL answers, else Prefect's SQLite test harness; yields a label."""
    with socket.socket() as sock:
        sock.settimeout(1)
        pg = sock.connect_ex(("127.0.0.1", 5432)) == 0
    if pg:
        with postgres_server(home) as url:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: url}):
                yield "prefect server on PostgreSQL"
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield "prefect test harness on SQLite"


def main() -> None:
    """Run both, alternating, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="Measured runs of each (after one warm-up).")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="linli-bench-dags-"))
    (folder / "bench-20.yaml").write_text(definition_yaml(), encoding="utf-8")
    os.environ.update({"LINLI_DAG__DEFINITIONS_DIR": str(folder), "LINLI_DAG__TASK_MODULES": "",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                       "PREFECT_LOGGING_LEVEL": "WARNING"})
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from prefect import flow, task

    from flows.dag_runner import run_dag
    from linli.dag.registry import register

    @register("bench.work")
    @task(name="work")
    async def work(value: int) -> int:
        """One step: a little async work."""
        await asyncio.sleep(0)
        return value + 1

    @flow(name="bench-20-hand-written", flow_run_name="bench-20 ← hand-written")
    async def hand_written() -> list[int]:
        """The same process written by hand: 4 layers of 5 concurrent steps."""
        values = list(range(WIDTH))
        for _ in range(LAYERS):
            values = list(await asyncio.gather(*(work(v) for v in values)))
        return values

    async def timed(coro_fn) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        await coro_fn()
        return time.perf_counter() - start

    with prefect_server(folder) as server:
        async def go() -> tuple[list[float], list[float]]:
            dag_times: list[float] = []
            hand_times: list[float] = []
            states = await run_dag(dag="bench-20")  # warm-up both (imports, caches, first API calls)
            assert set(states.values()) == {"completed"} and len(states) == LAYERS * WIDTH, states
            assert await hand_written() == [LAYERS + i for i in range(WIDTH)]
            for _ in range(args.runs):
                hand_times.append(await timed(hand_written))
                dag_times.append(await timed(lambda: run_dag(dag="bench-20")))
            return dag_times, hand_times

        dag_times, hand_times = asyncio.run(go())
    dag_s, hand_s = statistics.median(dag_times), statistics.median(hand_times)
    ratio, min_ratio = dag_s / hand_s, min(dag_times) / min(hand_times)

    def listed(times: list[float]) -> str:
        return ", ".join(f"{t * 1000:.0f}" for t in times)

    print(f"20-step process, median of {args.runs} runs each (alternating, {server}):")
    print(f"  hand-written Prefect flow: {hand_s * 1000:8.1f} ms  (runs: {listed(hand_times)})")
    print(f"  YAML DAG via the runner:   {dag_s * 1000:8.1f} ms  (runs: {listed(dag_times)})")
    print(f"  ratio DAG / hand-written:  {ratio:8.3f}  (overhead {100 * (ratio - 1):+.1f} %, goal < +10 %); "
          f"fastest runs: {min_ratio:.3f}")
    print(json.dumps({"benchmark": "dag_overhead", "steps": LAYERS * WIDTH, "runs": args.runs,
                      "hand_written_ms": round(hand_s * 1000, 1), "dag_ms": round(dag_s * 1000, 1),
                      "ratio": round(ratio, 3), "overhead_pct": round(100 * (ratio - 1), 1),
                      "fastest_ratio": round(min_ratio, 3), "server": server, "goal_met": ratio < 1.10}))


if __name__ == "__main__":
    main()
