"""`linli dag deploy`: validate every definition and register (or update) its deployment.

Deployments registered here are run by `linli serve` (restart it to pick up a DAG it does not
serve yet) or, with `--work-pool`, by the workers of that pool.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from flows.deployments import current_definitions, dag_deployments
from linli.dag.registry import load_task_modules
from linli.settings import get_settings


def deploy(work_pool: str | None = None) -> list[str]:
    """Register every definition's deployment; return their names."""
    settings = get_settings()
    registry = load_task_modules(settings.dag.task_modules)
    definitions = asyncio.run(current_definitions(settings.dag.definitions_dir, registry))
    for deployment in dag_deployments(definitions):
        if work_pool:
            deployment.work_pool_name = work_pool
            # The entrypoint (flows/dag_runner.py) is relative to this directory; without a working
            # directory a process worker starts each run in a new temporary one and cannot find it.
            deployment.job_variables = {"working_dir": str(Path.cwd())}
        deployment.apply()
    return sorted(definitions)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger(__name__).info("deployed: %s", ", ".join(deploy(sys.argv[1] if len(sys.argv) > 1 else None)))
