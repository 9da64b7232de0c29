"""The deployments of the closed loop: which event (or schedule) starts which stage."""

from __future__ import annotations

from datetime import timedelta

from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from flows.assess import assess
from flows.dispatch import dispatch
from flows.evaluate import evaluate
from flows.report import report
from flows.sla_watch import sla_watch

# stage flow → the case events that start it. Intake (CLI, API, simulator), handlers and residents
# emit reported / resolved / rated; evaluate emits reopened; the SLA watch emits restart.<stage> for a
# case idle in an automated stage. The report flow runs assess and dispatch as its subflows, so
# the events those two emit (assessing, assessed, dispatched) only record progress.
STAGES = [
    (report, ["linli.case.reported", "linli.case.restart.report"]),
    (assess, ["linli.case.restart.assess"]),
    (dispatch, ["linli.case.reopened", "linli.case.restart.dispatch"]),
    (evaluate, ["linli.case.resolved", "linli.case.rated", "linli.case.restart.evaluate"]),
]


def case_trigger(events: list[str]) -> DeploymentEventTrigger:
    """Start the deployment once per matching case event, with the case id from the event."""
    return DeploymentEventTrigger(
        expect=set(events),
        match={"prefect.resource.id": "linli.case.*"},
        parameters={"case_id": "{{ event.payload.case_id }}"},
    )


def loop_deployments(*, sla_interval_seconds: int = 60) -> list[RunnerDeployment]:
    """The closed loop's deployments: one per stage, triggered by case events, and the SLA watch."""
    deployments = [
        stage.to_deployment(
            name=stage.name, triggers=[case_trigger(events)], tags=["linli", "loop"],
            description=(stage.__doc__ or "").strip(),
        )
        for stage, events in STAGES
    ]
    deployments.append(sla_watch.to_deployment(
        name="sla-watch", interval=timedelta(seconds=sla_interval_seconds), tags=["linli", "loop"],
        description=(sla_watch.__doc__ or "").strip(),
    ))
    return deployments
