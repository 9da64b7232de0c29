"""What the runner needs at run time, free of Prefect: parameters bound, the expression context,
`when:` decisions and each step's arguments rendered and type-checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from linli.dag.expressions import ExpressionError, render, truthy
from linli.dag.model import DagDefinition, Step
from linli.dag.registry import RegisteredTask, error_text
from linli.dag.validate import DagInvalid, issue

_PYTHON = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list, "object": dict}
StepState = Literal["completed", "skipped", "failed", "not_run"]


def bind_params(definition: DagDefinition, given: dict[str, Any] | None, *, source: str) -> dict[str, Any]:
    """The run's parameters: defaults overlaid with what was given, each checked against its type."""
    given = dict(given or {})
    issues = [issue(source, None, "run_param_unknown", name=name, known=list(definition.params))
              for name in given if name not in definition.params]
    bound: dict[str, Any] = {}
    for name, param in definition.params.items():
        if name not in given:
            if param.required:
                issues.append(issue(source, None, "run_param_required", name=name))
            bound[name] = param.default
            continue
        value = given[name]
        try:
            bound[name] = None if value is None else TypeAdapter(_PYTHON[param.type]).validate_python(value)
        except PydanticValidationError as err:
            issues.append(issue(source, None, "run_param_type", name=name, type=param.type, error=error_text(err)))
    if issues:
        raise DagInvalid(source, issues)
    return bound


def params_from_trigger(definition: DagDefinition, given: dict[str, Any] | None, trigger: dict[str, Any],
                        *, source: str) -> dict[str, Any]:
    """The given parameters plus those the definition's `trigger.params` take from the event."""
    params = dict(given or {})
    if definition.trigger is None or not trigger.get("event"):
        return params
    for name, expression in definition.trigger.params.items():
        try:
            params[name] = render(expression, {"trigger": trigger})
        except ExpressionError as err:
            raise DagInvalid(source, [issue(source, None, "trigger_param_failed", name=name, error=err)]) from err
    return params


def trigger_matches(definition: DagDefinition, trigger: dict[str, Any]) -> bool:
    """Whether an event-triggered run's payload has what the trigger's `payload:` asks for."""
    if definition.trigger is None or not definition.trigger.payload or not trigger.get("event"):
        return True
    payload = trigger.get("payload") or {}
    for key, want in definition.trigger.payload.items():
        have = payload.get(key)
        if not (have in want if isinstance(want, list) else have == want):
            return False
    return True


@dataclass
class Outcome:
    """How one step ended."""

    state: StepState
    result: Any = None
    reason: str = ""


class RunState:
    """The context expressions see, and every step's outcome so far."""

    def __init__(self, definition: DagDefinition, params: dict[str, Any], trigger: dict[str, Any],
                 *, started: datetime, source: str) -> None:
        self.definition = definition
        self.source = source
        self.outcomes: dict[str, Outcome] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.context: dict[str, Any] = {
            "params": params, "trigger": trigger, "steps": self.steps,
            "run": {"dag": definition.name, "started": started.isoformat()},
        }

    def record(self, name: str, outcome: Outcome) -> None:
        """Remember a step's outcome; expressions then see steps.<name>.result / .skipped."""
        self.outcomes[name] = outcome
        # Results stay as the task returned them (models read by attribute): no copy per step.
        self.steps[name] = {"result": outcome.result, "skipped": outcome.state == "skipped",
                            "state": outcome.state}

    def blocked_by(self, step: Step) -> tuple[StepState, str] | None:
        """Why a step cannot run although its upstream finished: an upstream skipped or failed."""
        for parent in step.after:
            outcome = self.outcomes[parent]
            if outcome.state == "skipped":
                return "skipped", f"upstream step '{parent}' was skipped"
            if outcome.state in ("failed", "not_run"):
                return "not_run", f"upstream step '{parent}' did not complete"
        return None

    def should_run(self, name: str, step: Step) -> bool:
        """Evaluate the step's `when:` (true when there is none)."""
        if step.when is None:
            return True
        try:
            return truthy(step.when, self.context)
        except ExpressionError as err:
            raise DagInvalid(self.source, [issue(self.source, name, "when_failed", error=err)]) from err

    def arguments(self, name: str, step: Step, task: RegisteredTask) -> dict[str, Any]:
        """The step's `with:` rendered and converted to the task's parameter types."""
        try:
            rendered = render(step.with_, self.context)
            return task.bind(rendered)
        except ExpressionError as err:
            found = issue(self.source, name, "with_failed", error=err)
        except PydanticValidationError as err:
            found = issue(self.source, name, "arguments_mismatch", task=task.name, error=error_text(err))
        raise DagInvalid(self.source, [found])
