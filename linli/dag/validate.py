"""Every check a DAG definition passes before it is deployed or run, with errors that say what to fix.

Checks, in order: the YAML parses; the structure fits the format (`model`); each step names a
registered task, passes only parameters the task has, every required one, literals of the right
type; `after:` names existing steps; there is no cycle; every expression parses, uses only
`params`, `steps`, `trigger` and `run`, names defined params, and reads only steps upstream of it.
All problems are reported at once, each naming the file and the step.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from linli.dag.expressions import NAMES, ExpressionError, condition_text, has_expression, references
from linli.dag.model import DagDefinition, Step
from linli.dag.registry import TaskRegistry, error_text
from linli.errors import ValidationError

STEP_NAME_HINT = "name steps with letters, digits and _ (they are used as steps.<name> in expressions)"


@dataclass(frozen=True)
class DagIssue:
    """One problem in one definition."""

    source: str
    step: str | None
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: step '{self.step}'" if self.step else self.source
        return f"{where}: {self.message}" + (f" — {self.hint}" if self.hint else "")


class DagInvalid(ValidationError):
    """A definition that cannot run; `.issues` lists every problem found."""

    def __init__(self, source: str, issues: list[DagIssue]) -> None:
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} problem(s) in the DAG definition\n{lines}",
                         field="dag", hint="fix each problem listed, then run `linli dag validate` again")
        self.source = source
        self.issues = issues


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """The YAML document as a mapping; DagInvalid with the line of a syntax error."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise DagInvalid(source, [DagIssue(source, None, f"YAML does not parse{where}: {problem}",
                                           "check indentation and quote values holding ':' or '{{'")]) from err
    if not isinstance(data, dict):
        raise DagInvalid(source, [DagIssue(source, None, "the file is not a YAML mapping",
                                           "start with 'name:', 'steps:' … (see flows/dags/)")])
    return data


def _structure_issues(err: PydanticValidationError, source: str) -> list[DagIssue]:
    issues = []
    for e in err.errors():
        loc = [str(part) for part in e["loc"]]
        step = loc[1] if len(loc) >= 2 and loc[0] == "steps" else None
        field = ".".join(loc[2:] if step else loc) or "definition"
        msg = e["msg"].removeprefix("Value error, ")
        hint = "remove it or check its spelling" if e["type"] == "extra_forbidden" else ""
        if e["type"] == "missing":
            hint = "add it"
        issues.append(DagIssue(source, step, f"{field}: {msg}", hint))
    return issues


def _upstream(steps: dict[str, Step]) -> dict[str, set[str]]:
    """Every step's ancestors (only through known steps)."""
    memo: dict[str, set[str]] = {}

    def visit(name: str, seen: frozenset[str]) -> set[str]:
        if name in memo:
            return memo[name]
        found: set[str] = set()
        for parent in steps[name].after:
            if parent in steps and parent not in seen:
                found |= {parent} | visit(parent, seen | {parent})
        memo[name] = found
        return found

    return {name: visit(name, frozenset({name})) for name in steps}


def find_cycle(steps: dict[str, Step]) -> list[str] | None:
    """One dependency cycle as a path (a → b → a), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for parent in steps[name].after:
            if parent not in steps:
                continue
            if state.get(parent) == 1:
                return path[path.index(parent):] + [parent]
            if parent not in state and (cycle := visit(parent)):
                return cycle
        state[name] = 2
        path.pop()
        return None

    for name in steps:
        if name not in state and (cycle := visit(name)):
            return list(reversed(cycle))
    return None


def _expression_issues(source: str, name: str, what: str, value: Any, definition: DagDefinition,
                       upstream: set[str]) -> list[DagIssue]:
    try:
        refs = references(value)
    except ExpressionError as err:
        return [DagIssue(source, name, f"{what}: {err}", "fix the {{ … }} expression")]
    issues = []
    for unknown in sorted(refs.names - NAMES):
        issues.append(DagIssue(source, name, f"{what}: unknown name '{unknown}' in an expression",
                               "expressions may use params, steps, trigger and run"))
    for param in sorted(refs.params - set(definition.params)):
        issues.append(DagIssue(source, name, f"{what}: uses params.{param}, which is not defined",
                               f"add '{param}' under params: or use one of: {', '.join(definition.params) or 'none'}"))
    for ref in sorted(refs.steps):
        if ref not in definition.steps:
            issues.append(DagIssue(source, name, f"{what}: uses steps.{ref}, but there is no step '{ref}'",
                                   "fix the step name"))
        elif ref not in upstream:
            issues.append(DagIssue(source, name, f"{what}: uses steps.{ref}, which is not upstream of '{name}'",
                                   f"add '{ref}' to after: of '{name}' (directly or through another step)"))
    if refs.whole_steps:
        issues.append(DagIssue(source, name, f"{what}: uses 'steps' without naming a step",
                               "write steps.<name>.result so the dependency can be checked"))
    return issues


def _task_issues(source: str, name: str, step: Step, registry: TaskRegistry) -> list[DagIssue]:
    task = registry.get(step.task)
    if task is None:
        close = registry.suggest(step.task)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return [DagIssue(source, name, f"unknown task '{step.task}'",
                         hint + "see the registered tasks with `linli dag tasks`")]
    issues = []
    takes = ", ".join(f"{p.name}: {p.type_label}" for p in task.params.values()) or "no parameters"
    for arg in step.with_:
        if arg not in task.params:
            issues.append(DagIssue(source, name, f"task {task.name} has no parameter '{arg}'", f"it takes {takes}"))
    for param in task.params.values():
        if param.required and param.name not in step.with_:
            issues.append(DagIssue(source, name, f"missing required parameter '{param.name}' of {task.name}",
                                   f"add it under with: ({param.name}: {param.type_label})"))
    for arg, value in step.with_.items():
        if arg in task.params and not has_expression(value):
            try:
                task.params[arg].check(value)
            except PydanticValidationError as err:
                issues.append(DagIssue(source, name, f"parameter '{arg}' of {task.name} has the wrong type: "
                                       f"{value!r} ({error_text(err)})",
                                       f"give a {task.params[arg].type_label}"))
    return issues


def check(data: dict[str, Any], *, source: str, registry: TaskRegistry) -> tuple[DagDefinition | None, list[DagIssue]]:
    """The definition and every problem found in it (the definition is None if its structure is wrong)."""
    try:
        definition = DagDefinition.model_validate(data)
    except PydanticValidationError as err:
        return None, _structure_issues(err, source)
    issues: list[DagIssue] = []
    steps = definition.steps
    for name, step in steps.items():
        if not name.isidentifier():
            issues.append(DagIssue(source, name, f"bad step name '{name}'", STEP_NAME_HINT))
        issues += _task_issues(source, name, step, registry)
        for parent in step.after:
            if parent not in steps:
                close = difflib.get_close_matches(parent, [s for s in steps if s != name], n=1)
                hint = "define it or fix the name" + (f" (did you mean '{close[0]}'?)" if close else "")
                issues.append(DagIssue(source, name, f"after: names step '{parent}', which is not defined", hint))
    cycle = find_cycle(steps)
    if cycle:
        issues.append(DagIssue(source, cycle[0], "steps depend on each other in a cycle: " + " → ".join(cycle),
                               "remove one of these after: entries"))
    if definition.trigger is not None:
        for param, expression in definition.trigger.params.items():
            if param not in definition.params:
                issues.append(DagIssue(source, None, f"trigger.params sets '{param}', which is not a parameter",
                                       f"add '{param}' under params:"))
            try:
                refs = references(expression)
            except ExpressionError as err:
                issues.append(DagIssue(source, None, f"trigger.params.{param}: {err}", "fix the expression"))
                continue
            if refs.names - {"trigger"}:
                issues.append(DagIssue(source, None, f"trigger.params.{param} may only read the trigger",
                                       "write e.g. '{{ trigger.payload.case_id }}'"))
    upstream = _upstream(steps)
    for name, step in steps.items():
        for arg, value in step.with_.items():
            issues += _expression_issues(source, name, f"with.{arg}", value, definition, upstream[name])
        if step.when is not None:
            issues += _expression_issues(source, name, "when", condition_text(step.when), definition, upstream[name])
    return definition, issues


def load_text(text: str, *, source: str, registry: TaskRegistry) -> DagDefinition:
    """A valid definition from YAML text; DagInvalid listing every problem otherwise."""
    definition, issues = check(parse_yaml(text, source), source=source, registry=registry)
    if issues or definition is None:
        raise DagInvalid(source, issues)
    return definition


def load_file(path: Path, *, registry: TaskRegistry) -> DagDefinition:
    """A valid definition from a YAML file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise DagInvalid(str(path), [DagIssue(str(path), None, f"cannot read the file: {err.strerror}",
                                              "check the path")]) from err
    return load_text(text, source=str(path), registry=registry)


def load_folder(folder: Path, *, registry: TaskRegistry) -> dict[str, DagDefinition]:
    """Every definition in a folder (*.yaml, *.yml) by name; DagInvalid with all problems of all files."""
    found: dict[str, DagDefinition] = {}
    origin: dict[str, str] = {}
    issues: list[DagIssue] = []
    for path in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
        try:
            definition = load_file(path, registry=registry)
        except DagInvalid as err:
            issues += err.issues
            continue
        if definition.name != path.stem:
            issues.append(DagIssue(str(path), None, f"the file of DAG '{definition.name}' is named {path.name}",
                                   f"rename it to {definition.name}{path.suffix} (the runner finds a DAG by its name)"))
            continue
        if definition.name in found:
            issues.append(DagIssue(str(path), None, f"name '{definition.name}' is already used by "
                                   f"{origin[definition.name]}", "give each definition its own name"))
            continue
        found[definition.name], origin[definition.name] = definition, str(path)
    if issues:
        raise DagInvalid(str(folder), issues)
    return found
