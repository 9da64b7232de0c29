"""`linli dag …`: list tasks, validate, draw, override and deploy the low-code DAGs."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from linli.dag.model import DagDefinition
from linli.dag.registry import TaskRegistry, load_task_modules
from linli.dag.validate import DagInvalid, DagIssue, load_file
from linli.errors import NotFound
from linli.i18n import t
from linli.settings import Settings

dag_app = typer.Typer(help="Low-code DAGs: governance processes in YAML.", no_args_is_help=True)


def _run(work: Callable[[Settings], None]) -> None:
    # linli.cli adds this sub-app at its end, so its helpers are imported when a command runs
    # (importing them at the top would be circular, also under `python -m linli.cli`).
    from linli.cli import _run as run

    def told_in_the_users_language(settings: Settings) -> None:
        try:
            work(settings)
        except DagInvalid as err:
            raise err.in_language(str(settings.language)) from err

    run(told_in_the_users_language)


class _Console:
    """linli.cli's console, looked up when used."""

    def print(self, *args: Any, **kwargs: Any) -> None:
        from linli.cli import console as cli_console

        cli_console.print(*args, **kwargs)


console = _Console()


def _registry(settings: Settings) -> TaskRegistry:
    return load_task_modules(settings.dag.task_modules)


def _definition(settings: Settings, name_or_path: str) -> DagDefinition:
    """A shipped DAG by name, or a YAML file by path (validated either way)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_file(path, registry=_registry(settings))
    shipped = settings.dag.definitions_dir / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise NotFound(f"no DAG named '{name_or_path}' in {settings.dag.definitions_dir}",
                       hint="list them with `linli dag list`, or give the path of a YAML file")
    return load_file(shipped, registry=_registry(settings))


@dag_app.command("tasks")
def dag_tasks() -> None:
    """List the registered tasks a step can use, with their parameters and what they do."""

    def work(settings: Settings) -> None:
        registry = _registry(settings)
        if not len(registry):
            console.print(t("dag_no_tasks", str(settings.language)))
            return
        table = Table("task", "parameters", "what it does")
        for task in registry:
            params = ", ".join(f"{p.name}: {p.type_label}" + ("" if p.required else f" = {p.default!r}")
                               for p in task.params.values())
            table.add_row(task.name, params or "—", task.doc)
        console.print(table)

    _run(work)


@dag_app.command("list")
def dag_list() -> None:
    """List the shipped DAGs with their schedule and trigger."""

    def work(settings: Settings) -> None:
        from linli.dag.graph import describe_timing
        from linli.dag.validate import load_folder

        table = Table("name", "steps", "schedule", "trigger", "description")
        for name, definition in sorted(load_folder(settings.dag.definitions_dir, registry=_registry(settings)).items()):
            schedule, trigger = describe_timing(definition)
            table.add_row(name, str(len(definition.steps)), schedule or "—", trigger or "—",
                          definition.description.strip()[:60])
        console.print(table)

    _run(work)


@dag_app.command("validate")
def dag_validate(paths: Annotated[list[Path] | None, typer.Argument(
        help="YAML files or folders; default: the shipped definitions.")] = None) -> None:
    """Check DAG definitions; every problem is printed with its file, step and fix; exit 2 if any."""

    def work(settings: Settings) -> None:
        registry = _registry(settings)
        files: list[Path] = []
        for path in paths or [settings.dag.definitions_dir]:
            files += sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        issues: list[DagIssue] = []
        for file in files:
            try:
                definition = load_file(file, registry=registry)
            except DagInvalid as err:
                issues += err.issues
                continue
            console.print(t("dag_valid", str(settings.language), source=file, name=definition.name,
                            steps=len(definition.steps)))
        if issues:
            raise DagInvalid(", ".join(str(f) for f in files) if len(files) < 4 else f"{len(files)} files", issues)

    _run(work)


class GraphFormat(StrEnum):
    """How `linli dag graph` draws."""

    text = "text"
    mermaid = "mermaid"
    png = "png"


@dag_app.command("graph")
def dag_graph(
    name: Annotated[str, typer.Argument(help="A shipped DAG's name, or the path of a YAML file.")],
    format: Annotated[GraphFormat, typer.Option("--format", "-f", help="text, mermaid or png.")] = GraphFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Draw a DAG: as text (default), Mermaid, or a PNG image."""

    def work(settings: Settings) -> None:
        from linli.dag import graph

        definition = _definition(settings, name)
        if format == GraphFormat.png:
            path = graph.png(definition, output or Path(f"{definition.name}.png"))
            console.print(t("dag_written", str(settings.language), path=path))
            return
        drawn = graph.mermaid(definition) if format == GraphFormat.mermaid else graph.text(definition)
        if output:
            output.write_text(drawn + "\n", encoding="utf-8")
            console.print(t("dag_written", str(settings.language), path=output))
        else:
            console.print(drawn, markup=False, highlight=False)

    _run(work)


@dag_app.command("override")
def dag_override(path: Annotated[Path, typer.Argument(help="YAML file of the DAG (its name: is the block's name).")]
                 ) -> None:
    """Save a DAG as an override block in Prefect (refused unless it validates); the next run uses it."""

    def work(settings: Settings) -> None:
        definition = load_file(path, registry=_registry(settings))
        blocks = importlib.import_module("blocks.dag")  # the CLI wires the layers, as `linli serve` does
        blocks.DagDefinitionBlock(yaml=path.read_text(encoding="utf-8")).save(definition.name, overwrite=True)
        console.print(t("dag_override_saved", str(settings.language), name=definition.name))

    _run(work)


@dag_app.command("deploy")
def dag_deploy(work_pool: Annotated[str | None, typer.Option(
        help="Run the deployments on this work pool's workers instead of `linli serve`.")] = None) -> None:
    """Validate every definition (files and override blocks) and register its Prefect deployment."""

    def work(settings: Settings) -> None:
        names = importlib.import_module("flows.deploy").deploy(work_pool)
        lang = str(settings.language)
        console.print(t("dag_deployed", lang, count=len(names), names=", ".join(names)))
        if not work_pool:
            console.print(t("dag_deploy_next", lang))

    _run(work)
