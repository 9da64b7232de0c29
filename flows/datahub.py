"""Data-hub push on a schedule: every endpoint block gets the outbox records it has not had yet."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow
from prefect.deployments.runner import RunnerDeployment

from linli.loop import StepResult
from tasks.cases import publish
from tasks.datahub import PushSummary, load_endpoints, push_endpoint


@flow(name="datahub-push", flow_run_name="datahub-push")
async def datahub_push(endpoints: list[str] | None = None, deadline_seconds: float = 50) -> list[PushSummary]:
    """Push access and vehicle records to each data-hub endpoint; alert staff about parked batches."""
    pushed = [await push_endpoint(endpoint, deadline_seconds) for endpoint in await load_endpoints(endpoints)]
    alerts = [i for summary in pushed for i in summary.alerts]
    if alerts:
        await publish(StepResult(case_id=0, case_number="", status="", notifications=alerts))
    return pushed


def datahub_deployments(*, interval_seconds: int = 60) -> list[RunnerDeployment]:
    """The push deployment; each run pushes for up to ~50 s, so one a minute keeps records near real time."""
    return [datahub_push.to_deployment(name="datahub-push", interval=timedelta(seconds=interval_seconds),
                                       tags=["linli", "datahub"], description=(datahub_push.__doc__ or "").strip())]
