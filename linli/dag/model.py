"""The YAML format of a DAG definition, as pydantic models (structure only; `validate` checks meaning)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Becomes a Prefect deployment name and a block-document name: lower-case letters, digits, dashes.
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]
# JSON-schema type names (what Prefect's UI draws a form from) → the Python types a value may have.
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,),
}


def type_of(value: Any) -> ParamType:
    """The parameter type a default value implies."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


class Param(BaseModel):
    """A parameter of the process, editable per run and per deployment in the Prefect UI.

    Written in full (`{type: integer, default: 24, description: …}`) or as just its default (`24`).
    A parameter without a default is required.
    """

    model_config = ConfigDict(extra="forbid")

    type: ParamType = "string"
    default: Any = None
    required: bool = False
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict) and value and set(value) <= {"type", "default", "description", "required"}:
            spec = dict(value)
            if "default" not in spec:
                spec.setdefault("required", True)
            elif "type" not in spec:
                spec["type"] = type_of(spec["default"])
            return spec
        return {"type": type_of(value), "default": value}

    @model_validator(mode="after")
    def _default_has_the_type(self) -> Param:
        if self.default is not None and not _is_type(self.default, self.type):
            raise ValueError(f"default {self.default!r} is not of type {self.type}")
        return self


def _is_type(value: Any, kind: str) -> bool:
    if kind != "boolean" and isinstance(value, bool):
        return False
    return isinstance(value, PYTHON_TYPES[kind])


class Schedule(BaseModel):
    """When the process runs by itself: a cron expression or a fixed interval."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(default=None, description="Five-field cron, e.g. '0 9 * * 1' (Mondays 09:00).")
    interval_seconds: float | None = Field(default=None, gt=0, description="Run every this many seconds.")
    timezone: str = Field(default="Asia/Shanghai", description="Time zone the cron is read in.")

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from datetime import datetime

        from cronsim import CronSim, CronSimError

        try:
            CronSim(value, datetime(2026, 1, 1))
        except CronSimError as err:
            raise ValueError(f"bad cron {value!r} ({err}); write five fields: minute hour day month weekday, "
                             "e.g. '0 */6 * * *'") from err
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron or interval_seconds")
        return self


class Trigger(BaseModel):
    """Which Prefect events start the process: event names, and what their resource and payload must match."""

    model_config = ConfigDict(extra="forbid")

    events: list[str] = Field(min_length=1, description="Event names, e.g. linli.case.reported ('*' wildcards).")
    match: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Resource labels the event must carry, e.g. prefect.resource.id: linli.case.*")
    payload: dict[str, Any] = Field(
        default_factory=dict, description="Payload fields the event must have (checked when the run starts).")
    params: dict[str, str] = Field(
        default_factory=dict, description="Parameters taken from the event, e.g. case_id: "
                                          "'{{ trigger.payload.case_id }}'.")

    @field_validator("events", mode="before")
    @classmethod
    def _one_event(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Step(BaseModel):
    """One step: a registered task, its arguments, what it waits for and when it runs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task: str = Field(description="Dotted name of a registered task, e.g. cases.assess (see `linli dag tasks`).")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="Arguments; may hold {{ … }}.")
    after: list[str] = Field(default_factory=list, description="Steps that must finish first.")
    when: str | None = Field(default=None, description="Run only if this expression is true, e.g. "
                                                       "'{{ steps.find.result | length > 0 }}'.")
    retries: int | None = Field(default=None, ge=0, le=10, description="Retries on failure (task default if unset).")
    retry_delay_seconds: float | None = Field(default=None, ge=0, le=3600, description="Wait between retries.")
    timeout_seconds: float | None = Field(default=None, gt=0, description="Fail the step after this long.")
    description: str = ""

    @field_validator("after", mode="before")
    @classmethod
    def _one_upstream(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class DagDefinition(BaseModel):
    """A governance process: parameters, when it runs, and its steps."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Deployment name: lower-case letters, digits, dashes.")
    description: str = ""
    params: dict[str, Param] = Field(default_factory=dict)
    schedule: Schedule | None = None
    trigger: Trigger | None = None
    tags: list[str] = Field(default_factory=list)
    steps: dict[str, Step] = Field(min_length=1)

    def defaults(self) -> dict[str, Any]:
        """Default value of every parameter that has one."""
        return {name: p.default for name, p in self.params.items() if not p.required}
