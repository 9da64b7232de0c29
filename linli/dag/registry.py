"""The task registry: tasks register under dotted names with typed parameters, so a DAG is checked
against real signatures before it runs.

`tasks/` modules decorate their Prefect tasks with `@register("cases.assess")`; this module only
reads signatures and never imports Prefect. Which modules hold tasks is a setting
(`LINLI_DAG__TASK_MODULES`), loaded by `load_task_modules`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from pydantic import ValidationError as PydanticValidationError

from linli.errors import ConfigurationError

TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
F = TypeVar("F")


@dataclass(frozen=True)
class TaskParam:
    """One parameter of a registered task."""

    name: str
    annotation: Any
    required: bool
    default: Any = None

    @property
    def type_label(self) -> str:
        """The annotation as a reader would write it."""
        annotation = self.annotation
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        if isinstance(annotation, type):
            return annotation.__name__
        return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(annotation))

    def check(self, value: Any) -> Any:
        """The value converted to the parameter's type; pydantic's ValidationError if it cannot be."""
        return TypeAdapter(self.annotation, config=ConfigDict(arbitrary_types_allowed=True)).validate_python(value)


@dataclass(frozen=True)
class RegisteredTask:
    """A task a DAG step can name."""

    name: str
    fn: Any  # the Prefect task (or any async callable) the runner awaits
    doc: str
    params: dict[str, TaskParam]
    arguments: type[BaseModel]

    def bind(self, values: dict[str, Any]) -> dict[str, Any]:
        """Arguments converted to the declared types; pydantic's ValidationError naming each bad one."""
        checked = self.arguments.model_validate(values)
        return {name: getattr(checked, name) for name in self.params}


def _signature_of(fn: Any) -> dict[str, TaskParam]:
    target = getattr(fn, "fn", fn)  # a Prefect Task keeps the function in .fn
    hints = typing.get_type_hints(target, include_extras=True)
    params: dict[str, TaskParam] = {}
    for name, p in inspect.signature(target).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigurationError(f"task function {target.__qualname__} takes *{name}",
                                     hint="registered tasks take named, typed parameters only")
        required = p.default is inspect.Parameter.empty
        params[name] = TaskParam(name, hints.get(name, Any), required, None if required else p.default)
    return params


class TaskRegistry:
    """Dotted name → registered task."""

    def __init__(self) -> None:
        self._tasks: dict[str, RegisteredTask] = {}

    def register(self, name: str, *, doc: str = "") -> Callable[[F], F]:
        """Decorator: make a task available to DAG steps under `name` (e.g. 'cases.assess')."""
        if not TASK_NAME.match(name):
            raise ConfigurationError(f"bad task name {name!r}", hint="use dotted lower-case names, e.g. notify.send")

        def decorate(fn: F) -> F:
            params = _signature_of(fn)
            fields: dict[str, Any] = {p.name: (p.annotation, ... if p.required else p.default) for p in params.values()}
            model = create_model(  # type: ignore[call-overload]
                f"Arguments of {name}", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)
            text = doc or inspect.getdoc(getattr(fn, "fn", fn)) or ""
            self._tasks[name] = RegisteredTask(name, fn, text.strip().splitlines()[0] if text else "", params, model)
            return fn

        return decorate

    def get(self, name: str) -> RegisteredTask | None:
        """The task registered as `name`, or None."""
        return self._tasks.get(name)

    def suggest(self, name: str) -> list[str]:
        """Registered names close to a misspelt one."""
        return difflib.get_close_matches(name, list(self._tasks), n=3, cutoff=0.6)

    def __iter__(self) -> Iterator[RegisteredTask]:
        return iter(sorted(self._tasks.values(), key=lambda t: t.name))

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)


REGISTRY = TaskRegistry()
register = REGISTRY.register


def load_task_modules(modules: Iterable[str]) -> TaskRegistry:
    """Import the modules that register tasks (the setting dag.task_modules); return the registry."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigurationError(f"cannot import task module {module!r}: {err}",
                                     hint="check LINLI_DAG__TASK_MODULES") from err
    return REGISTRY


def error_text(err: PydanticValidationError) -> str:
    """A pydantic error as one short line per problem: 'hours: Input should be a valid integer'."""
    return "; ".join(f"{'.'.join(str(part) for part in e['loc']) or 'value'}: {e['msg']}" for e in err.errors())
