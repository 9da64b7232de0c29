"""What the DAG runner costs: one 20-step process run as a YAML DAG and as a hand-written Prefect flow.

Both run the same async task 20 times in 4 layers of 5 concurrent steps, each step taking its
upstream's result, against the same temporary Prefect server, alternating, in one process. Prints
both median run times and the ratio; the last line is JSON. Goal: the DAG adds under 10 %.

    .venv/bin/python benchmarks/dag_overhead.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    """Run both, alternating, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="Measured runs of each (after one warm-up).")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="linli-bench-dags-"))
    (folder / "bench-20.yaml").write_text(definition_yaml(), encoding="utf-8")
    os.environ.update({"LINLI_DAG__DEFINITIONS_DIR": str(folder), "LINLI_DAG__TASK_MODULES": "",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                       "PREFECT_LOGGING_LEVEL": "WARNING"})
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from prefect import flow, task
    from prefect.testing.utilities import prefect_test_harness

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

    with prefect_test_harness(server_startup_timeout=120):
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

    print(f"20-step process, median of {args.runs} runs each (alternating, one Prefect server):")
    print(f"  hand-written Prefect flow: {hand_s * 1000:8.1f} ms  (runs: {listed(hand_times)})")
    print(f"  YAML DAG via the runner:   {dag_s * 1000:8.1f} ms  (runs: {listed(dag_times)})")
    print(f"  ratio DAG / hand-written:  {ratio:8.3f}  (overhead {100 * (ratio - 1):+.1f} %, goal < +10 %); "
          f"fastest runs: {min_ratio:.3f}")
    print(json.dumps({"benchmark": "dag_overhead", "steps": LAYERS * WIDTH, "runs": args.runs,
                      "hand_written_ms": round(hand_s * 1000, 1), "dag_ms": round(dag_s * 1000, 1),
                      "ratio": round(ratio, 3), "overhead_pct": round(100 * (ratio - 1), 1),
                      "fastest_ratio": round(min_ratio, 3), "goal_met": ratio < 1.10}))


if __name__ == "__main__":
    main()
