"""Tasks of the closed loop: receive, assess, dispatch, evaluate, SLA sweep, and publish their outcome.

They are `async` because the flows are: a sync task inside an async flow costs Prefect 3.8 about
1.5 s more per call (measured); the database work inside is short and runs on the flow's loop.
"""

from __future__ import annotations

from prefect import task

from linli.db import session_scope
from linli.events import CaseEventOut, PrefectEventBus
from linli.loop.assess import assess, receive
from linli.loop.dispatch import dispatch
from linli.loop.evaluate import evaluate
from linli.loop.sla import sweep
from linli.models import utcnow
from linli.notify import AppriseNotifier, deliver
from linli.settings import get_settings
from tasks.common import EventOut, StepSummary, run_step, transient_only
from tasks.policy import current_loop_config

RETRY = {"retries": 3, "retry_delay_seconds": [1, 5, 15], "retry_condition_fn": transient_only}


@task(name="receive report", **RETRY)
async def receive_report(case_id: int) -> StepSummary:
    """Send the reporter a receipt and hand the case to assessment."""
    return run_step(receive, case_id)


@task(name="assess case", **RETRY)
async def assess_case(case_id: int) -> StepSummary:
    """Set priority, SLA deadline and the team the case is routed to."""
    return run_step(assess, case_id)


@task(name="dispatch case", **RETRY)
async def dispatch_case(case_id: int) -> StepSummary:
    """Assign the case to an on-duty team member (or back to its handler when reopened)."""
    return run_step(dispatch, case_id)


@task(name="evaluate case", **RETRY)
async def evaluate_case(case_id: int) -> StepSummary:
    """Ask the reporter for a rating, or close / reopen on the rating given."""
    return run_step(evaluate, case_id)


class SweepSummary(StepSummary):
    """What one SLA sweep did."""

    warned: list[str] = []
    escalated: list[str] = []
    auto_closed: list[str] = []
    restarted: list[str] = []


@task(name="sweep SLAs", **RETRY)
async def sweep_slas() -> SweepSummary:
    """Warn before deadlines, escalate breaches, auto-close unrated cases, restart stuck stages."""
    config = current_loop_config()  # reads the governance-policy block: edits apply to the next run
    with session_scope() as session:
        out = sweep(session, now=utcnow(), config=config)
    return SweepSummary(
        case_id=0, case_number="", status="", notifications=out.notifications,
        events=[EventOut(name=e.name, case_id=e.case_id, case_number=e.case_number, payload=e.payload)
                for e in out.events],
        warned=out.warned, escalated=out.escalated, auto_closed=out.auto_closed, restarted=out.restarted,
        detail=f"{len(out.warned)} warned, {len(out.escalated)} escalated, {len(out.auto_closed)} auto-closed, "
        f"{len(out.restarted)} restarted",
    )


@task(name="publish", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only)
async def publish(step: StepSummary) -> dict[str, int]:
    """After the step committed: deliver the notifications it queued, then announce its case events.

    The events start the next stage's deployment, so they go out last.
    """
    counts: dict[str, int] = {}
    if step.notifications:
        settings = get_settings()
        notifier = AppriseNotifier(timeout_seconds=settings.notify.timeout_seconds)
        with session_scope() as session:
            rows = deliver(session, step.notifications, notifier=notifier, global_urls=settings.notify.urls)
        for row in rows:
            counts[str(row.status)] = counts.get(str(row.status), 0) + 1
    PrefectEventBus().emit([CaseEventOut(e.name, e.case_id, e.case_number, e.payload) for e in step.events])
    counts["events"] = len(step.events)
    return counts
