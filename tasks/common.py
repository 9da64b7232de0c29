"""What every task shares: the plain-data result of a loop step and the transient-error retry rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError

from linli.db import session_scope
from linli.loop import StepResult
from tasks.policy import current_loop_config


class EventOut(BaseModel):
    """A case event to emit, as plain data."""

    name: str
    case_id: int
    case_number: str
    payload: dict[str, Any] = Field(default_factory=dict)


class StepSummary(BaseModel):
    """The plain-data result of one loop step, passed between tasks."""

    case_id: int
    case_number: str
    status: str
    detail: str = ""
    notifications: list[int] = Field(default_factory=list)
    events: list[EventOut] = Field(default_factory=list)

    @classmethod
    def of(cls, result: StepResult) -> StepSummary:
        """Summarise a loop step."""
        return cls(
            case_id=result.case_id, case_number=result.case_number, status=result.status, detail=result.detail,
            notifications=list(result.notifications),
            events=[EventOut(name=e.name, case_id=e.case_id, case_number=e.case_number, payload=e.payload)
                    for e in result.events],
        )


def transient_only(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what may pass by itself: a dropped or busy database connection."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and bool(error.connection_invalidated)
    )


def run_step(step: Callable[..., StepResult], case_id: int) -> StepSummary:
    """Run one loop step on its own unit of work with the configured loop settings."""
    config = current_loop_config()  # reads the governance-policy block: edits apply to the next run
    with session_scope() as session:
        result = step(session, case_id, config=config)
    return StepSummary.of(result)

