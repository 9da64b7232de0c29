"""Where a definition comes from: a shipped file in flows/dags/, or an admin's override (block text).

An override that does not validate is refused: the last override that did validate keeps
running, or the shipped file when there was none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from linli.dag.model import DagDefinition
from linli.dag.registry import TaskRegistry
from linli.dag.validate import DagInvalid, issue, load_file, load_text
from linli.errors import NotFound

_FILE_CACHE: dict[tuple[Path, float], DagDefinition] = {}


def shipped_file(folder: Path, name: str) -> Path:
    """The file a shipped definition lives in."""
    return Path(folder) / f"{name}.yaml"


def load_shipped(folder: Path, name: str, *, registry: TaskRegistry) -> DagDefinition:
    """The shipped definition `name`, validated (cached until the file changes)."""
    path = shipped_file(folder, name)
    if not path.is_file():
        raise NotFound(f"no DAG named '{name}' in {folder}",
                       hint="list the DAGs with `linli dag list`, or add one as an override block")
    key = (path.resolve(), path.stat().st_mtime)
    if key not in _FILE_CACHE:
        _FILE_CACHE[key] = load_file(path, registry=registry)
    return _FILE_CACHE[key]


def override_source(name: str) -> str:
    """How an override of `name` is named in errors."""
    return f"override block '{name}'"


def load_override(name: str, text: str, *, registry: TaskRegistry) -> DagDefinition:
    """An override's definition, validated; its `name:` must be the block's name."""
    source = override_source(name)
    definition = load_text(text, source=source, registry=registry)
    if definition.name != name:
        raise DagInvalid(source, [issue(source, None, "override_name", wrong=definition.name, name=name)])
    return definition


@dataclass(frozen=True)
class Resolved:
    """The definition a run uses, where it came from, and an override refused on the way (if any)."""

    definition: DagDefinition
    origin: str
    refused: DagInvalid | None = None


def resolve(name: str, *, folder: Path, override: str | None, last_good: str | None,
            registry: TaskRegistry) -> Resolved:
    """The override if it validates, else the last good override, else the shipped file."""
    refused = None
    if override:
        try:
            return Resolved(load_override(name, override, registry=registry), override_source(name))
        except DagInvalid as err:
            refused = err
    if last_good and last_good != override:
        try:
            return Resolved(load_override(name, last_good, registry=registry),
                            f"{override_source(name)} (last good version)", refused)
        except DagInvalid:
            pass  # tasks changed since it was saved; the shipped file is the safe fallback
    path = shipped_file(folder, name)
    if refused is not None and not path.is_file():
        raise refused
    return Resolved(load_shipped(folder, name, registry=registry), str(path), refused)
