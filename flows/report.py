"""上报 — the report stage: receipt to the reporter, then assessment and dispatch as its subflows.

Each stage is still its own flow run in the Prefect UI; running them as subflows saves the
process start of a separately triggered run (a few seconds each on a small machine).
"""

from prefect import flow

from flows.assess import assess
from flows.dispatch import dispatch
from tasks.cases import publish, receive_report
from tasks.common import StepSummary


@flow(name="report", flow_run_name="report · case {case_id}")
async def report(case_id: int) -> StepSummary:
    """A new case: tell the reporter we have it, assess it, dispatch it."""
    step = await receive_report(case_id)
    await publish(step)
    await assess(case_id=case_id)
    await dispatch(case_id=case_id)
    return step
