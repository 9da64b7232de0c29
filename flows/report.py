"""上报 — the report stage: receipt to the reporter, then on to assessment."""

from prefect import flow

from tasks.cases import announce, receive_report
from tasks.common import StepSummary
from tasks.notify import deliver_notifications


@flow(name="report", flow_run_name="report · case {case_id}", log_prints=False)
async def report(case_id: int) -> StepSummary:
    """A new case: tell the reporter we have it, then hand it to assessment."""
    step = receive_report(case_id)
    deliver_notifications(step.notifications)
    announce(step.events)
    return step
