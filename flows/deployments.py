"""One Prefect deployment per DAG definition, all of the generic runner flow: what an admin sees is what runs.

Each deployment is named after its DAG and carries the DAG's schedule, event trigger and parameter
defaults; the UI draws the DAG's parameters as a form (the `params` object) and edits to them take
effect on the next run. Definitions come from flows/dags/*.yaml and the DAG-definition blocks.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Interval, Schedule
from prefect.utilities.callables import ParameterSchema

from blocks.dag import override_names, resolve_definition
from flows.dag_runner import run_dag
from linli.dag.model import DagDefinition
from linli.dag.registry import TaskRegistry
from linli.dag.validate import load_folder


def _text(template: str) -> dict[str, str]:
    # An explicit Jinja value renders to a string; a bare "{{ x }}" would go through tojson, which
    # fails for an event's UUID and datetime (Prefect then refuses to create the run).
    return {"__prefect_kind": "jinja", "template": template}


# What the runner's `trigger` parameter holds for an event-started run (Prefect renders these per event).
EVENT_TRIGGER_PARAMETERS: dict[str, Any] = {
    "event": _text("{{ event.event }}"), "id": _text("{{ event.id }}"), "occurred": _text("{{ event.occurred }}"),
    "resource": _text("{{ event.resource.id }}"), "resource_name": _text("{{ event.resource.name or '' }}"),
    "payload": "{{ event.payload }}",  # one expression: kept a JSON object
}


def _param_schema(definition: DagDefinition) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, param in definition.params.items():
        prop: dict[str, Any] = {"title": name, "description": param.description}
        if param.required or param.default is None:
            prop["anyOf"] = [{"type": param.type}, {"type": "null"}]
        else:
            prop["type"], prop["default"] = param.type, param.default
        if param.type == "array" and isinstance(param.default, list) and param.default:
            item_type = {type(item) for item in param.default}
            if item_type <= {str}:
                prop["items"] = {"type": "string"}  # the UI then shows plain text boxes, not JSON editors
        properties[name] = prop
    return {"title": "params", "type": "object", "position": 1, "properties": properties,
            "description": "The process's parameters; a run started by an event fills those its trigger maps."}


def parameter_schema(definition: DagDefinition) -> ParameterSchema:
    """The deployment's parameter form: the DAG (fixed), its params, and the trigger (set by events)."""
    return ParameterSchema(
        title="Parameters", type="object", required=["dag"],
        properties={
            "dag": {"title": "dag", "type": "string", "readOnly": True, "enum": [definition.name], "position": 0,
                    "description": "The DAG this deployment runs."},
            "params": _param_schema(definition),
            "trigger": {"title": "trigger", "type": "object", "position": 2,
                        "description": "The event that started the run (event, resource, payload); "
                                       "empty for scheduled and manual runs."},
        },
    )


def _schedules(definition: DagDefinition) -> list[Schedule]:
    schedule = definition.schedule
    if schedule is None:
        return []
    if schedule.cron:
        return [Cron(schedule.cron, timezone=schedule.timezone)]
    return [Interval(timedelta(seconds=schedule.interval_seconds or 60), timezone=schedule.timezone)]


def _triggers(definition: DagDefinition) -> list[DeploymentEventTrigger]:
    if definition.trigger is None:
        return []
    return [DeploymentEventTrigger(
        name=f"{definition.name} on {', '.join(definition.trigger.events)}"[:100],
        expect=set(definition.trigger.events), match=dict(definition.trigger.match),
        parameters={"trigger": dict(EVENT_TRIGGER_PARAMETERS)},
    )]


def dag_deployment(definition: DagDefinition) -> RunnerDeployment:
    """The deployment of one DAG definition."""
    deployment = run_dag.to_deployment(
        name=definition.name, description=definition.description.strip() or None,
        tags=["linli", "dag", *definition.tags], schedules=_schedules(definition), triggers=_triggers(definition),
        parameters={"dag": definition.name, "params": definition.defaults(), "trigger": {}},
    )
    deployment._parameter_openapi_schema = parameter_schema(definition)
    return deployment


def dag_deployments(definitions: dict[str, DagDefinition]) -> list[RunnerDeployment]:
    """One deployment per definition, in name order."""
    return [dag_deployment(definitions[name]) for name in sorted(definitions)]



async def current_definitions(folder: Path, registry: TaskRegistry) -> dict[str, DagDefinition]:
    """Every definition as it runs now: shipped files, overridden or added by valid blocks.

    A shipped file that does not validate stops the deploy (DagInvalid); a refused override is
    replaced by its last good version or the file, as a run would.
    """
    definitions = load_folder(folder, registry=registry)
    for name in await override_names():
        definitions[name] = (await resolve_definition(name, folder=folder, registry=registry)).definition
    return definitions
