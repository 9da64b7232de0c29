"""Tasks of the closed loop: receive, assess, dispatch, evaluate, SLA sweep, and publish their outcome.

Each is registered for DAG steps under `cases.<name>` (see flows/dags/). They are `async` because
the flows are: a sync task inside an async flow costs Prefect 3.8 about 1.5 s more per call
(measured); the database work inside is short and runs on the flow's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from prefect import Task, task
from pydantic import Field

from linli.dag.registry import register
from linli.db import session_scope
from linli.events import PrefectEventBus
from linli.loop import StepResult
from linli.loop.assess import assess, receive
from linli.loop.dispatch import dispatch
from linli.loop.evaluate import evaluate
from linli.loop.sla import SweepResult, sweep
from linli.models import utcnow
from linli.notify import AppriseNotifier, deliver
from linli.settings import get_settings
from tasks.common import run_step, transient_only
from tasks.policy import current_loop_config

RETRY = {"retries": 3, "retry_delay_seconds": [1, 5, 15], "retry_condition_fn": transient_only}


def stage_task(step: Callable[..., StepResult], *, name: str, registered: str, doc: str) -> Task[..., Any]:
    """A retrying Prefect task that runs one loop stage on a case, registered for DAG steps."""

    async def run(case_id: int) -> StepResult:
        return run_step(step, case_id)

    # Prefect keys a task by its function's qualified name: give each stage its own.
    run.__name__ = run.__qualname__ = registered.replace(".", "_")
    run.__doc__ = doc
    return register(registered)(task(run, name=name, **RETRY))


receive_report = stage_task(receive, name="receive report", registered="cases.receive",
                            doc="Send the reporter a receipt and hand the case to assessment.")
assess_case = stage_task(assess, name="assess case", registered="cases.assess",
                         doc="Set priority, SLA deadline and the team the case is routed to.")
dispatch_case = stage_task(dispatch, name="dispatch case", registered="cases.dispatch",
                           doc="Assign the case to an on-duty team member (or back to its handler when reopened).")
evaluate_case = stage_task(evaluate, name="evaluate case", registered="cases.evaluate",
                           doc="Ask the reporter for a rating, or close / reopen on the rating given.")


@register("cases.sweep_slas")
@task(name="sweep SLAs", **RETRY)
async def sweep_slas() -> SweepResult:
    """Warn before deadlines, escalate breaches, auto-close unrated cases, restart stuck stages."""
    config = current_loop_config()  # reads the governance-policy block: edits apply to the next run
    with session_scope() as session:
        return sweep(session, now=utcnow(), config=config)


# A step's outcome or a sweep's: the first that fits (a sweep has no case_id).
Outcome = Annotated[StepResult | SweepResult, Field(union_mode="left_to_right")]


@register("cases.publish")
@task(name="publish", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only)
async def publish(outcome: Outcome) -> dict[str, int]:
    """After a step committed: deliver the notifications it queued, then announce its case events.

    The events start the next stage's deployment, so they go out last.
    """
    counts: dict[str, int] = {}
    if outcome.notifications:
        settings = get_settings()
        notifier = AppriseNotifier(timeout_seconds=settings.notify.timeout_seconds)
        with session_scope() as session:
            rows = deliver(session, outcome.notifications, notifier=notifier, global_urls=settings.notify.urls)
        for row in rows:
            counts[str(row.status)] = counts.get(str(row.status), 0) + 1
    PrefectEventBus().emit(outcome.events)
    counts["events"] = len(outcome.events)
    return counts
