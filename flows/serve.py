"""Serve every DAG's deployment (the governance loop and the other processes) from this process.

`python -m flows.serve`. Definitions are validated first: a broken shipped file stops here with
the errors, not at the first run.
"""

from __future__ import annotations

import asyncio

from prefect import serve

from flows.deployments import current_definitions, dag_deployments
from linli.dag.registry import load_task_modules
from linli.settings import get_settings


def main() -> None:
    """Register the deployments and run their flows as events and schedules arrive."""
    settings = get_settings()
    registry = load_task_modules(settings.dag.task_modules)
    definitions = asyncio.run(current_definitions(settings.dag.definitions_dir, registry))
    # query_seconds=1: a triggered run starts within ~1 s of being scheduled instead of ~10 s.
    # limit=3: each run is a new Python process; more at once only thrash a small machine.
    serve(*dag_deployments(definitions), query_seconds=1, pause_on_shutdown=False, limit=3)


if __name__ == "__main__":
    main()
