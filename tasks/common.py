"""What every task shares: running one loop step on its own unit of work, and the transient-error retry rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from sqlalchemy.exc import DBAPIError, OperationalError

from linli.db import session_scope
from linli.loop import StepResult
from tasks.policy import current_loop_config


def transient_only(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what may pass by itself: a dropped or busy database connection."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and bool(error.connection_invalidated)
    )


def run_step(step: Callable[..., StepResult], case_id: int) -> StepResult:
    """Run one loop step on its own unit of work with the configured loop settings.

    `StepResult` is a pydantic dataclass, so it crosses task boundaries (and DAG expressions) as is.
    """
    config = current_loop_config()  # reads the governance-policy block: edits apply to the next run
    with session_scope() as session:
        return step(session, case_id, config=config)
