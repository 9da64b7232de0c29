"""A small read-only client of Prefect's REST API (httpx, not the prefect package) for the dashboard.

It reads recent flow runs and the deployments with their schedules and triggers. The request and
response shapes follow Prefect 3's server (`prefect/server/api/flow_runs.py`, `flows.py`,
`deployments.py`, `automations.py`): every list is a `POST .../filter` with a JSON body.
A server that cannot be reached or answers with an error becomes a `DeliveryError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from linli.errors import DeliveryError

TIMEOUT_SECONDS = 5.0
UNREACHABLE_HINT = "start `linli demo` or set LINLI_PREFECT__API_URL"


@dataclass(frozen=True)
class FlowRunRow:
    """One flow run as the dashboard lists it."""

    id: str
    name: str
    flow_name: str
    deployment_name: str | None
    state_type: str | None
    state_name: str | None
    start_time: datetime | None
    duration: timedelta | None


@dataclass(frozen=True)
class DeploymentRow:
    """One deployment: what it runs, when, and whether anything triggers it."""

    id: str
    name: str
    flow_name: str
    schedule: str
    triggers: int
    paused: bool


def _post(client: httpx.Client, api_url: str, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"{api_url.rstrip('/')}/{path}"
    try:
        response = client.post(url, json=body)
    except httpx.TransportError as err:  # refused, DNS, timeout: nobody is answering
        raise DeliveryError(f"Prefect API at {api_url} is not reachable", hint=UNREACHABLE_HINT) from err
    if response.status_code >= 400:
        raise DeliveryError(
            f"Prefect API at {api_url} answered {response.status_code} to POST /{path}: {response.text[:200]}",
            hint="check that LINLI_PREFECT__API_URL points at a Prefect 3 server's /api",
        )
    try:
        data = response.json()
    except ValueError as err:
        raise DeliveryError(
            f"Prefect API at {api_url} did not answer JSON to POST /{path}",
            hint="LINLI_PREFECT__API_URL should end in /api",
        ) from err
    if not isinstance(data, list):
        raise DeliveryError(f"Prefect API at {api_url} answered POST /{path} with something other than a list")
    return data


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _names(client: httpx.Client, api_url: str, path: str, key: str, ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = _post(client, api_url, f"{path}/filter", {key: {"id": {"any_": wanted}}, "limit": len(wanted)})
    return {row["id"]: row["name"] for row in rows}


def recent_flow_runs(api_url: str, limit: int = 50, *, timeout: float = TIMEOUT_SECONDS) -> list[FlowRunRow]:
    """The latest flow runs that have started or were due to, newest first, with flow and deployment names."""
    now = datetime.now(UTC).isoformat()
    with httpx.Client(timeout=timeout) as client:
        runs = _post(client, api_url, "flow_runs/filter", {
            "sort": "START_TIME_DESC",
            "limit": limit,
            # Future scheduled runs would otherwise sort first (Prefect sorts by start or expected start).
            "flow_runs": {"expected_start_time": {"before_": now}},
        })
        flows = _names(client, api_url, "flows", "flows", (r["flow_id"] for r in runs))
        deployments = _names(client, api_url, "deployments", "deployments",
                             (r["deployment_id"] for r in runs if r.get("deployment_id")))
    rows = []
    for run in runs:
        seconds = run.get("estimated_run_time", run.get("total_run_time"))  # includes a running run's time so far
        rows.append(FlowRunRow(
            id=run["id"],
            name=run["name"],
            flow_name=flows.get(run["flow_id"], run["flow_id"]),
            deployment_name=deployments.get(run.get("deployment_id") or ""),
            state_type=run.get("state_type"),
            state_name=run.get("state_name"),
            start_time=_time(run.get("start_time")),
            duration=timedelta(seconds=float(seconds)) if seconds is not None and run.get("start_time") else None,
        ))
    return rows


def schedule_summary(schedules: list[dict[str, Any]]) -> str:
    """One line per deployment: 'cron 0 * * * * (Asia/Shanghai)', 'every 60s', 'rrule …'; '' for none."""
    parts = []
    for item in schedules:
        schedule = item.get("schedule") or {}
        if "cron" in schedule:
            text = f"cron {schedule['cron']}"
        elif "interval" in schedule:
            text = f"every {float(schedule['interval']):g}s"
        elif "rrule" in schedule:
            text = f"rrule {schedule['rrule']}"
        else:
            text = "custom"
        if schedule.get("timezone"):
            text += f" ({schedule['timezone']})"
        if not item.get("active", True):
            text += " [inactive]"
        parts.append(text)
    return "; ".join(parts)


def _trigger_counts(automations: list[dict[str, Any]]) -> dict[str, int]:
    # A deployment trigger is an automation whose action runs that deployment (Prefect stores the
    # owner on the server side only, so the action is what the API shows).
    counts: dict[str, int] = {}
    for automation in automations:
        targets = {
            action.get("deployment_id")
            for action in automation.get("actions", [])
            if action.get("type") == "run-deployment" and action.get("source", "selected") == "selected"
        }
        for target in targets - {None}:
            counts[target] = counts.get(target, 0) + 1
    return counts


def deployments(api_url: str, *, timeout: float = TIMEOUT_SECONDS) -> list[DeploymentRow]:
    """Every deployment by name with its flow, a schedule summary, how many triggers run it, and paused."""
    with httpx.Client(timeout=timeout) as client:
        rows = _post(client, api_url, "deployments/filter", {"sort": "NAME_ASC", "limit": 200})
        flows = _names(client, api_url, "flows", "flows", (r["flow_id"] for r in rows))
        triggers = _trigger_counts(_post(client, api_url, "automations/filter", {"limit": 200}))
    return [
        DeploymentRow(
            id=row["id"],
            name=row["name"],
            flow_name=flows.get(row["flow_id"], row["flow_id"]),
            schedule=schedule_summary(row.get("schedules") or []),
            triggers=triggers.get(row["id"], 0),
            paused=bool(row.get("paused", False)),
        )
        for row in rows
    ]


# --- the low-code DAGs' deployments (dashboard "Processes" page) ---------------------------------


@dataclass(frozen=True)
class StepError:
    """The latest failure of one DAG step (a task run named after the step)."""

    step: str
    message: str
    at: datetime | None
    flow_run_name: str


@dataclass(frozen=True)
class DagOverride:
    """A DAG-definition block as stored: its YAML, the last good version, and why it was refused."""

    name: str
    yaml: str
    last_good_yaml: str
    refused: str


def dag_runs(api_url: str, dag: str, limit: int = 10, *, flow_name: str = "dag",
             timeout: float = TIMEOUT_SECONDS) -> list[FlowRunRow]:
    """The latest runs of DAG `dag`: runs of the runner flow named '<dag> ← <trigger>' (deployed or not)."""
    now = datetime.now(UTC).isoformat()
    prefix = f"{dag} ←"
    with httpx.Client(timeout=timeout) as client:
        runs = _post(client, api_url, "flow_runs/filter", {
            "sort": "START_TIME_DESC", "limit": limit * 3,
            "flow_runs": {"expected_start_time": {"before_": now}, "name": {"like_": prefix}},
            "flows": {"name": {"any_": [flow_name]}},
        })
    runs = [run for run in runs if run["name"].startswith(prefix)][:limit]  # like_ matches anywhere in the name
    return [FlowRunRow(
        id=run["id"], name=run["name"], flow_name=flow_name, deployment_name=None,
        state_type=run.get("state_type"), state_name=run.get("state_name"), start_time=_time(run.get("start_time")),
        duration=timedelta(seconds=float(run.get("estimated_run_time") or 0)) if run.get("start_time") else None,
    ) for run in runs]


def step_errors(api_url: str, runs: list[FlowRunRow], *, timeout: float = TIMEOUT_SECONDS) -> dict[str, StepError]:
    """Per step name, the latest failed or crashed task run among `runs`, with its state message."""
    if not runs:
        return {}
    names = {run.id: run.name for run in runs}
    with httpx.Client(timeout=timeout) as client:
        failed = _post(client, api_url, "task_runs/filter", {
            "sort": "EXPECTED_START_TIME_DESC", "limit": 200,
            "flow_runs": {"id": {"any_": list(names)}},
            "task_runs": {"state": {"type": {"any_": ["FAILED", "CRASHED"]}}},
        })
    errors: dict[str, StepError] = {}
    for row in failed:
        step = row["name"]
        if step not in errors:  # newest first: keep the first seen
            state = row.get("state") or {}
            errors[step] = StepError(step, str(state.get("message") or row.get("state_name") or ""),
                                     _time(row.get("end_time") or row.get("expected_start_time")),
                                     names.get(row.get("flow_run_id") or "", ""))
    return errors


def dag_overrides(api_url: str, *, block_type_slug: str = "linli-dag-definition",
                  timeout: float = TIMEOUT_SECONDS) -> dict[str, DagOverride]:
    """Every DAG-definition block by name ({} when the block type was never registered)."""
    url = f"{api_url.rstrip('/')}/block_types/slug/{block_type_slug}/block_documents"
    try:
        response = httpx.get(url, timeout=timeout, params={"include_secrets": "false"})
    except httpx.TransportError as err:
        raise DeliveryError(f"Prefect API at {api_url} is not reachable", hint=UNREACHABLE_HINT) from err
    if response.status_code == 404:
        return {}
    if response.status_code >= 400:
        raise DeliveryError(f"Prefect API at {api_url} answered {response.status_code} to GET {url}")
    out = {}
    for doc in response.json():
        data = doc.get("data") or {}
        if doc.get("name") and not doc.get("is_anonymous"):
            out[doc["name"]] = DagOverride(doc["name"], str(data.get("yaml", "")), str(data.get("last_good_yaml", "")),
                                           str(data.get("refused", "")))
    return out
