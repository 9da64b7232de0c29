"""处置 — the dispatch stage: an on-duty team member gets the case and is told."""

from prefect import flow

from tasks.cases import dispatch_case, publish
from tasks.common import StepSummary


@flow(name="dispatch", flow_run_name="dispatch · case {case_id}")
async def dispatch(case_id: int) -> StepSummary:
    """Assign an assessed (or reopened) case and notify the assignee."""
    step = await dispatch_case(case_id)
    await publish(step)
    return step
