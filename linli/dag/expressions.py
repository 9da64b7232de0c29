"""`{{ … }}` expressions in DAG definitions, rendered in a sandboxed Jinja2 environment.

A definition is written by an admin, not a programmer, and may be edited in the Prefect UI, so
its expressions must never run arbitrary Python or reach files:

- `ImmutableSandboxedEnvironment`: no attribute starting with `_` (so no `__class__`,
  `__globals__`, `__subclasses__`), no calls to unsafe callables, no mutation of lists or dicts.
- No loader and no globals: `{% include %}`, `{% import %}` and `{% extends %}` have nothing to
  reach; `range`, `lipsum`, `cycler`, `joiner` and `namespace` are gone.
- `StrictUndefined`: a name that is not there is an error, never an empty string.

A value that is exactly one `{{ expression }}` keeps its type (a list stays a list); a value
mixing text and expressions renders to a string. Names visible to expressions: `params`,
`steps` (`steps.<name>.result`, `steps.<name>.skipped`), `trigger` (`trigger.event`,
`trigger.payload`, `trigger.resource`) and `run` (`run.dag`, `run.started`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

NAMES = frozenset({"params", "steps", "trigger", "run"})
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_FORBIDDEN_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends, nodes.Macro, nodes.CallBlock)


class ExpressionError(Exception):
    """An expression that cannot be parsed, is not allowed, or failed to evaluate."""


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, loader=None)
    env.globals.clear()
    return env


ENV = _environment()


def has_expression(value: Any) -> bool:
    """Whether a `with:` value holds a `{{ … }}` anywhere inside it."""
    return any("{{" in text or "{%" in text for text in _strings(value))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@dataclass(frozen=True)
class References:
    """What an expression reads: top-level names, steps and params it names."""

    names: frozenset[str]
    steps: frozenset[str]
    params: frozenset[str]
    whole_steps: bool  # `steps` used without naming one (e.g. iterated): cannot be checked


def parse(text: str) -> nodes.Template:
    """Parse a template text; refuse syntax errors and the tags that could reach other templates."""
    try:
        tree = ENV.parse(text)
    except jinja2.TemplateSyntaxError as err:
        raise ExpressionError(f"expression {text!r} does not parse: {err.message}") from err
    for node in tree.find_all(_FORBIDDEN_NODES):
        raise ExpressionError(f"expression {text!r} uses {{% {type(node).__name__.lower()} %}}, which is not allowed")
    for name in tree.find_all(nodes.Name):
        if name.name in ("self", "loop", "varargs", "kwargs", "caller") and name.ctx == "load":
            # template internals, not data: nothing a definition needs
            raise ExpressionError(f"expression {text!r} uses '{name.name}', which is not allowed")
    return tree


def references(value: Any) -> References:
    """Everything the expressions inside a value (str, list or dict) refer to."""
    names: set[str] = set()
    steps: set[str] = set()
    params: set[str] = set()
    whole = False
    for text in _strings(value):
        if "{{" not in text and "{%" not in text:
            continue
        tree = parse(text)
        names |= meta.find_undeclared_variables(tree)
        named: set[int] = set()
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            root = node.node
            if not isinstance(root, nodes.Name):
                continue
            key = node.attr if isinstance(node, nodes.Getattr) else (
                node.arg.value if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) else None)
            if key is None:
                continue
            if root.name == "steps":
                steps.add(key)
                named.add(id(root))
            elif root.name == "params":
                params.add(key)
        for name_node in tree.find_all(nodes.Name):
            if name_node.name == "steps" and name_node.ctx == "load" and id(name_node) not in named:
                whole = True
    return References(frozenset(names), frozenset(steps), frozenset(params), whole)


def condition_text(when: str) -> str:
    """A `when:` as a template: `{{ x }}` as written, a bare `x` wrapped."""
    return when if "{{" in when else "{{ " + when + " }}"


@lru_cache(maxsize=4096)
def _compiled_expression(expr: str) -> Any:
    parse("{{ " + expr + " }}")
    return ENV.compile_expression(expr, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(text: str) -> jinja2.Template:
    parse(text)
    return ENV.from_string(text)


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render every expression inside a value; `{{ x }}` alone keeps x's type."""
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    try:
        single = _SINGLE.match(value)
        if single and "{{" not in single["expr"] and "}}" not in single["expr"]:
            result = _compiled_expression(single["expr"].strip())(**context)
            if isinstance(result, jinja2.Undefined):
                result._fail_with_undefined_error()  # an unsafe or missing attribute: raise its error
            return result
        return _compiled_template(value).render(**context)
    except jinja2.exceptions.SecurityError as err:
        raise ExpressionError(f"{value!r} is not allowed: {err}") from err
    except jinja2.UndefinedError as err:
        raise ExpressionError(f"{value!r}: {err.message}") from err
    except jinja2.TemplateError as err:
        raise ExpressionError(f"{value!r} failed: {err}") from err
    except (TypeError, ValueError, ArithmeticError, LookupError) as err:
        raise ExpressionError(f"{value!r} failed: {type(err).__name__}: {err}") from err


def truthy(when: str, context: dict[str, Any]) -> bool:
    """Evaluate a `when:` condition."""
    return bool(render(condition_text(when), context))
