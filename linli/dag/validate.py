"""Every check a DAG definition passes before it is deployed or run, with errors that say what to fix.

Checks, in order: the YAML parses; the structure fits the format (`model`); each step names a
registered task, passes only parameters the task has, every required one, literals of the right
type; `after:` names existing steps; there is no cycle; every expression parses, uses only
`params`, `steps`, `trigger` and `run`, names defined params, and reads only steps upstream of it.
All problems are reported at once, each naming the file and the step.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from linli.dag.expressions import NAMES, ExpressionError, condition_text, has_expression, references
from linli.dag.messages import DASH, INVALID, INVALID_HINT, ISSUES, NONE, SEPARATOR, WHERE
from linli.dag.model import DagDefinition, Step
from linli.dag.registry import TaskRegistry, error_text
from linli.errors import ValidationError


@dataclass(frozen=True)
class DagIssue:
    """One problem in one definition: a message key from `messages.ISSUES` and its values."""

    source: str
    step: str | None
    key: str
    values: dict[str, Any] = field(default_factory=dict, hash=False)

    def _fill(self, template: str, lang: str) -> str:
        values = {k: (", ".join(map(str, v)) or NONE[lang]) if isinstance(v, list | tuple) else v
                  for k, v in self.values.items()}
        return template.format(**values)

    def message(self, lang: str = "en") -> str:
        """What is wrong, in `lang` (zh or en)."""
        zh_message, _, en_message, _ = ISSUES[self.key]
        return self._fill(zh_message if lang == "zh" else en_message, lang)

    def hint(self, lang: str = "en") -> str:
        """What to do about it, in `lang`."""
        _, zh_hint, _, en_hint = ISSUES[self.key]
        return self._fill(zh_hint if lang == "zh" else en_hint, lang)

    def text(self, lang: str = "en") -> str:
        """The whole line: where (file, step), what is wrong, what to do."""
        lang = "zh" if lang == "zh" else "en"
        with_step, without = WHERE[lang]
        where = (with_step if self.step else without).format(source=self.source, step=self.step)
        hint = self.hint(lang)
        return f"{where}{SEPARATOR[lang]}{self.message(lang)}" + (f"{DASH[lang]}{hint}" if hint else "")

    def __str__(self) -> str:
        return self.text("en")


def issue(source: str, step: str | None, key: str, **values: Any) -> DagIssue:
    """A DagIssue for message `key`."""
    return DagIssue(source, step, key, values)


class DagInvalid(ValidationError):
    """A definition that cannot run; `.issues` lists every problem found (message in `lang`, zh first)."""

    def __init__(self, source: str, issues: list[DagIssue], *, lang: str = "zh") -> None:
        lang = "zh" if lang == "zh" else "en"
        lines = "\n".join(f"  - {item.text(lang)}" for item in issues)
        super().__init__(INVALID[lang].format(source=source, count=len(issues)) + "\n" + lines,
                         field="dag", hint=INVALID_HINT[lang])
        self.source = source
        self.issues = issues

    def text(self, lang: str) -> str:
        """Every problem, one per line, in `lang`."""
        return "\n".join(item.text(lang) for item in self.issues)

    def in_language(self, lang: str) -> DagInvalid:
        """The same problems, told in `lang`."""
        return DagInvalid(self.source, self.issues, lang=lang)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """The YAML document as a mapping; DagInvalid with the line of a syntax error."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        found = (issue(source, None, "yaml_syntax_at", line=mark.line + 1, column=mark.column + 1, problem=problem)
                 if mark else issue(source, None, "yaml_syntax", problem=problem))
        raise DagInvalid(source, [found]) from err
    if not isinstance(data, dict):
        raise DagInvalid(source, [issue(source, None, "not_mapping")])
    return data


def _structure_issues(err: PydanticValidationError, source: str) -> list[DagIssue]:
    issues = []
    for e in err.errors():
        loc = [str(part) for part in e["loc"]]
        step = loc[1] if len(loc) >= 2 and loc[0] == "steps" else None
        field = ".".join(loc[2:] if step else loc) or "definition"
        msg = e["msg"].removeprefix("Value error, ")
        key = {"extra_forbidden": "structure_extra", "missing": "structure_missing"}.get(e["type"], "structure")
        issues.append(issue(source, step, key, field=field, msg=msg))
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
        return [issue(source, name, "expression", what=what, error=err)]
    issues = [issue(source, name, "unknown_name", what=what, name=unknown) for unknown in sorted(refs.names - NAMES)]
    issues += [issue(source, name, "unknown_param_ref", what=what, param=param, known=list(definition.params))
               for param in sorted(refs.params - set(definition.params))]
    for ref in sorted(refs.steps):
        if ref not in definition.steps:
            issues.append(issue(source, name, "unknown_step_ref", what=what, ref=ref))
        elif ref not in upstream:
            issues.append(issue(source, name, "not_upstream", what=what, ref=ref, target=name))
    if refs.whole_steps:
        issues.append(issue(source, name, "whole_steps", what=what))
    return issues


def _task_issues(source: str, name: str, step: Step, registry: TaskRegistry) -> list[DagIssue]:
    task = registry.get(step.task)
    if task is None:
        close = registry.suggest(step.task)
        if close:
            return [issue(source, name, "unknown_task_close", task=step.task, close=" / ".join(close))]
        return [issue(source, name, "unknown_task", task=step.task)]
    issues = []
    takes = [f"{p.name}: {p.type_label}" for p in task.params.values()]
    for arg in step.with_:
        if arg not in task.params:
            issues.append(issue(source, name, "no_such_param", task=task.name, arg=arg, takes=takes))
    for param in task.params.values():
        if param.required and param.name not in step.with_:
            issues.append(issue(source, name, "missing_param", task=task.name, param=param.name,
                                type=param.type_label))
    for arg, value in step.with_.items():
        if arg in task.params and not has_expression(value):
            try:
                task.params[arg].check(value)
            except PydanticValidationError as err:
                issues.append(issue(source, name, "wrong_type", task=task.name, arg=arg, value=repr(value),
                                    error=error_text(err), type=task.params[arg].type_label))
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
            issues.append(issue(source, name, "bad_step_name", name=name))
        issues += _task_issues(source, name, step, registry)
        for parent in step.after:
            if parent not in steps:
                close = difflib.get_close_matches(parent, [s for s in steps if s != name], n=1)
                issues.append(issue(source, name, "unknown_after_close", parent=parent, close=close[0]) if close
                              else issue(source, name, "unknown_after", parent=parent))
    cycle = find_cycle(steps)
    if cycle:
        issues.append(issue(source, cycle[0], "cycle", path=" → ".join(cycle)))
    if definition.trigger is not None:
        for param, expression in definition.trigger.params.items():
            if param not in definition.params:
                issues.append(issue(source, None, "trigger_param_unknown", param=param))
            try:
                refs = references(expression)
            except ExpressionError as err:
                issues.append(issue(source, None, "trigger_param_expression", param=param, error=err))
                continue
            if refs.names - {"trigger"}:
                issues.append(issue(source, None, "trigger_param_reads", param=param))
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
        raise DagInvalid(str(path), [issue(str(path), None, "cannot_read", error=err.strerror)]) from err
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
            issues.append(issue(str(path), None, "file_name", name=definition.name, file=path.name,
                                expected=f"{definition.name}{path.suffix}"))
            continue
        if definition.name in found:
            issues.append(issue(str(path), None, "duplicate_name", name=definition.name, other=origin[definition.name]))
            continue
        found[definition.name], origin[definition.name] = definition, str(path)
    if issues:
        raise DagInvalid(str(folder), issues)
    return found
