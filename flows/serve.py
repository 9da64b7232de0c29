"""Serve every DAG's deployment (the governance loop and the other processes) from this process.

`python -m flows.serve`. Definitions are validated first: a broken shipped file stops here with
the errors, not at the first run. By default the flow runs execute in this process on one warm
event loop (flows/worker.py); `LINLI_PREFECT__RUNNER=process` uses Prefect's `serve()` instead,
which starts a new Python process for each run.
"""

from __future__ import annotations

import asyncio

from prefect import serve

from flows.dag_runner import run_dag
from flows.deployments import current_definitions, dag_deployments
from flows.worker import WarmWorker
from linli.dag.registry import load_task_modules
from linli.logformat import configure_logging
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
    # Prefect put a handler on the root logger when imported; the worker's own lines (start, shutdown,
    # peak memory every 100 runs) and the flow runs' go to stderr in the chosen format (text or json).
    configure_logging(settings.ops.log_format, settings.ops.process_name or "worker",
                      loggers=("prefect._internal",))
    WarmWorker([(deployment, run_dag) for deployment in deployments], limit=settings.prefect.worker_limit,
               poll_seconds=settings.prefect.worker_poll_seconds,
               grace_seconds=settings.prefect.worker_grace_seconds).run()


if __name__ == "__main__":
    main()
