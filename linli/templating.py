"""The one Jinja2 environment for every text Linli renders (notifications, reports, payloads).

Residents type text that ends up in these templates, so the environment is strict and safe by
default:

- ``StrictUndefined``: a variable the caller forgot is an error naming it, never an empty string.
- HTML and XML templates (``.html``, ``.htm``, ``.xml``, also with a ``.j2`` suffix) are
  autoescaped.
- Markdown and plain-text templates (``.md``, ``.txt``, also with ``.j2``) pass every ``{{ }}``
  value through :func:`plain_text`: Apprise turns Markdown into HTML for e-mail, so a resident's
  ``<img src=...>`` or ``[link](...)`` must not become live markup there. ``Markup`` values
  (trusted, built by code) are left alone.

DAG expressions do not use this environment: they run in a sandboxed one of their own.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from linli.errors import ConfigurationError

ESCAPED_SUFFIXES = (".html", ".htm", ".xml", ".html.j2", ".htm.j2", ".xml.j2")
PLAIN_SUFFIXES = (".md", ".md.j2", ".txt", ".txt.j2")

# Characters that start markup in Markdown or HTML, swapped for look-alikes that do not:
# the full-width forms are what Chinese text uses anyway, so the message still reads naturally.
_NEUTRALISE = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］", "`": "ˋ", "\r": None})
_LINE_BREAKS = re.compile(r"\s*\n\s*")


def plain_text(value: str) -> str:
    """Text typed by a person, made inert for Markdown/HTML and kept on one line."""
    return _LINE_BREAKS.sub(" ", value.translate(_NEUTRALISE)).strip()


def _autoescape(template_name: str | None) -> bool:
    return template_name is not None and template_name.lower().endswith(ESCAPED_SUFFIXES)


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    name = (context.name or "").lower()
    if isinstance(value, str) and not isinstance(value, Markup) and name.endswith(PLAIN_SUFFIXES):
        return plain_text(value)
    return value


@lru_cache(maxsize=16)
def _environment(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder, encoding="utf-8"),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["plain"] = plain_text
    return env


def template_env(templates_dir: Path) -> jinja2.Environment:
    """The Jinja2 environment for `templates_dir` (one per folder per process)."""
    return _environment(Path(templates_dir).resolve())


def render(templates_dir: Path, name: str, **context: Any) -> str:
    """Render template `name` (relative to `templates_dir`) with `context`."""
    folder = Path(templates_dir).resolve()
    try:
        template = template_env(folder).get_template(name)
    except jinja2.TemplateNotFound as err:
        raise ConfigurationError(
            f"template {name!r} not found in {folder}",
            hint="check the template name and LINLI_TEMPLATES_DIR",
        ) from err
    except jinja2.TemplateSyntaxError as err:
        raise ConfigurationError(
            f"template {name!r} in {folder} has a syntax error on line {err.lineno}: {err.message}",
            hint="fix the template",
        ) from err
    try:
        return template.render(**context)
    except jinja2.UndefinedError as err:
        raise ConfigurationError(
            f"template {name!r} in {folder} needs a value it was not given: {err.message}",
            hint="pass it in the context, or guard it in the template with 'is defined'",
        ) from err
