"""Serve every DAG's deployment (the governance loop and the other processes) from this process.

`python -m flows.serve`. Definitions are validated first: a broken shipped file stops here with
the errors, not at the first run. By default the flow runs execute in this process on one warm
event loop (flows/worker.py); `LINLI_PREFECT__RUNNER=process` uses Prefect's `serve()` instead,
which starts a new Python process for each run.
"""

from __future__ import annotations

import asyncio
import logging

from prefect import serve

from flows.dag_runner import run_dag
from flows.deployments import current_definitions, dag_deployments
from flows.worker import WarmWorker
from linli.dag.registry import load_task_modules
from linli.settings import get_settings


def main() -> None:
    """Register the deployments and run their flows as events and schedules arrive."""
    settings = get_settings()
    registry = load_task_modules(settings.dag.task_modules)
    definitions = asyncio.run(current_definitions(settings.dag.definitions_dir, registry))
    deployments = dag_deployments(definitions)
    if settings.prefect.runner == "process":
        # query_seconds=1: a triggered run starts within ~1 s of being scheduled instead of ~10 s.
        # limit=3: each run is a new Python process; more at once only thrash a small machine.
        serve(*deployments, query_seconds=1, pause_on_shutdown=False, limit=3)
        return
    _log_worker_to_stderr()
    WarmWorker([(deployment, run_dag) for deployment in deployments], limit=settings.prefect.worker_limit,
               poll_seconds=settings.prefect.worker_poll_seconds,
               grace_seconds=settings.prefect.worker_grace_seconds).run()


def _log_worker_to_stderr() -> None:
    # Prefect configures the root logger on import (basicConfig is then a no-op); give the worker's
    # own lines (start, shutdown, peak memory every 100 runs) a handler so they reach the log.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"))
    worker_logger = logging.getLogger("linli.worker")
    worker_logger.addHandler(handler)
    worker_logger.setLevel(logging.INFO)
    worker_logger.propagate = False


if __name__ == "__main__":
    main()
