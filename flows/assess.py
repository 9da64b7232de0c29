"""研判 — the assess stage: priority, SLA and the team the case goes to."""

from prefect import flow

from tasks.cases import assess_case, publish
from tasks.common import StepSummary


@flow(name="assess", flow_run_name="assess · case {case_id}")
async def assess(case_id: int) -> StepSummary:
    """Assess a received case, then hand it to dispatch."""
    step = await assess_case(case_id)
    await publish(step)
    return step
