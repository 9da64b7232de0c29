"""The generic runner: one Prefect flow that executes any low-code DAG definition (flows/dags/*.yaml).

Each step is its own Prefect task run, named after the step; steps start as soon as everything in
their `after:` finished, so independent steps run concurrently on the flow's event loop. `when:`
skips a step (and what depends on it), `retries` / `retry_delay_seconds` / `timeout_seconds` go
onto the task run. A failed step does not stop its independent siblings; the run fails at the end,
naming every failed step.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from prefect import Task, flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from blocks.dag import resolve_definition
from linli.dag.graph import topological_order
from linli.dag.messages import RUN_FAILED
from linli.dag.model import DagDefinition, Step
from linli.dag.plan import Outcome, RunState, bind_params, params_from_trigger, trigger_matches
from linli.dag.registry import TaskRegistry, load_task_modules
from linli.errors import LinliError
from linli.settings import get_settings

_OPTIONED: dict[tuple[Any, ...], Task[..., Any]] = {}


class DagRunFailed(LinliError):
    """One or more steps of a DAG run failed."""


def run_name() -> str:
    """'<dag> ← <what started it>': the event (and its case), the schedule, or a manual run."""
    parameters = flow_run.parameters
    trigger = parameters.get("trigger") or {}
    if trigger.get("event"):
        what = str(trigger["event"]) + (f" · {trigger['resource_name']}" if trigger.get("resource_name") else "")
    else:
        context = FlowRunContext.get()
        scheduled = bool(context and context.flow_run and context.flow_run.auto_scheduled)
        what = "schedule" if scheduled else "manual"
    return f"{parameters.get('dag', 'dag')} ← {what}"


def _task_for(registered: Any, name: str, step: Step) -> Task[..., Any]:
    """The registered task with the step's name and options (made once per process and step)."""
    options: dict[str, Any] = {"task_run_name": name}
    if step.retries is not None:
        options["retries"] = step.retries
    if step.retry_delay_seconds is not None:
        options["retry_delay_seconds"] = step.retry_delay_seconds
    if step.timeout_seconds is not None:
        options["timeout_seconds"] = step.timeout_seconds
    key = (id(registered), name, step.retries, step.retry_delay_seconds, step.timeout_seconds)
    if key not in _OPTIONED:
        _OPTIONED[key] = registered.with_options(**options)
    return _OPTIONED[key]


async def _run_step(name: str, step: Step, state: RunState, registry: TaskRegistry,
                    upstream: list[asyncio.Task[None]]) -> None:
    if upstream:
        await asyncio.wait(upstream)
    logger = get_run_logger()
    blocked = state.blocked_by(step)
    if blocked is not None:
        logger.info("step %s %s: %s", name, *blocked)
        state.record(name, Outcome(blocked[0], reason=blocked[1]))
        return
    registered = registry.get(step.task)
    if registered is None:  # validated before the run; a task module may have changed since
        state.record(name, Outcome("failed", reason=f"unknown task {step.task}"))
        return
    try:
        if not state.should_run(name, step):
            logger.info("step %s skipped: when %s is false", name, step.when)
            state.record(name, Outcome("skipped", reason="when: false"))
            return
        result = await _task_for(registered.fn, name, step)(**state.arguments(name, step, registered))
    except Exception as err:  # noqa: BLE001 — recorded and raised with every other failure at the end of the run
        logger.error("step %s failed: %s", name, err)
        state.record(name, Outcome("failed", reason=f"{type(err).__name__}: {err}"))
        return
    state.record(name, Outcome("completed", result))


async def execute(definition: DagDefinition, *, params: dict[str, Any] | None, trigger: dict[str, Any],
                  registry: TaskRegistry, source: str, lang: str = "zh") -> dict[str, str]:
    """Run every step of a validated definition; return each step's final state."""
    params = bind_params(definition, params_from_trigger(definition, params, trigger, source=source), source=source)
    if not trigger_matches(definition, trigger):
        get_run_logger().info("the event's payload does not match trigger.payload: nothing to do")
        return {name: "skipped" for name in definition.steps}
    state = RunState(definition, params, trigger, started=datetime.now(UTC), source=source)
    running: dict[str, asyncio.Task[None]] = {}
    for name in topological_order(definition):
        step = definition.steps[name]
        running[name] = asyncio.ensure_future(
            _run_step(name, step, state, registry, [running[parent] for parent in step.after]))
    await asyncio.gather(*running.values())
    failed = {name: o.reason for name, o in state.outcomes.items() if o.state == "failed"}
    if failed:
        message, hint = RUN_FAILED["zh" if lang == "zh" else "en"]
        raise DagRunFailed(message.format(dag=definition.name, count=len(failed),
                                          steps="; ".join(f"{name}: {reason}" for name, reason in failed.items())),
                           hint=hint)
    return {name: o.state for name, o in state.outcomes.items()}


@flow(name="dag", flow_run_name=run_name, log_prints=False)
async def run_dag(dag: str, params: dict[str, Any] | None = None,
                  trigger: dict[str, Any] | None = None) -> dict[str, str]:
    """Run the low-code DAG `dag`: its override block if one validates, else its file in flows/dags/."""
    settings = get_settings()
    registry = load_task_modules(settings.dag.task_modules)
    lang = str(settings.language)
    resolved = await resolve_definition(dag, folder=settings.dag.definitions_dir, registry=registry, lang=lang)
    if resolved.refused is not None:
        get_run_logger().warning("override refused, running %s instead:\n%s", resolved.origin,
                                 resolved.refused.text(lang))
    return await execute(resolved.definition, params=params, trigger=trigger or {}, registry=registry,
                         source=resolved.origin, lang=lang)
