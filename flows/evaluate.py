"""评价 — the evaluate stage: ask for a rating; close on a good one, reopen on a bad one."""

from prefect import flow

from tasks.cases import evaluate_case, publish
from tasks.common import StepSummary


@flow(name="evaluate", flow_run_name="evaluate · case {case_id}")
async def evaluate(case_id: int) -> StepSummary:
    """Evaluate a resolved case: request the rating, or act on the rating given."""
    step = await evaluate_case(case_id)
    await publish(step)
    return step
