"""`linli datahub endpoint …` (save a data-hub endpoint block) and `linli patrol import|routes` (routes from CSV).

Imported by linli.cli for its side effect: the commands join the `datahub` and `patrol` sub-apps.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.table import Column, Table

from linli.cli_devices import datahub_app
from linli.cli_people import CLI_USER, CsvFile, DryRun, patrol_app
from linli.i18n import t
from linli.settings import Settings

FieldList = Annotated[list[str] | None, typer.Option(help="A record field; repeat the option for several.")]


def _cli() -> ModuleType:
    """linli.cli, whose helpers (_run, console) these commands share; imported late, as it imports us."""
    from linli import cli

    return cli


@datahub_app.command("endpoint")
def datahub_endpoint(
    name: Annotated[str, typer.Argument(help="Endpoint (block) name; its cursor and status are kept under it.")],
    url: Annotated[str, typer.Option(help="Where batches of records are POSTed.")],
    mask: FieldList = None,
    drop: FieldList = None,
    keep: FieldList = None,
    kinds: Annotated[str, typer.Option(help="Record kinds to push, comma-separated.")] = "access,vehicle",
    batch_size: Annotated[int, typer.Option(help="Records per request.")] = 500,
) -> None:
    """Save (or replace) a data-hub endpoint block; the datahub-push deployment pushes to it from its next run.

    Without --mask/--drop/--keep the policy masks credential_ref (ID numbers, cards) and plate. The
    secret header value is set in the Prefect UI (Blocks → Linli Data-hub Endpoint), not on a command line.
    """

    def work(settings: Settings) -> None:
        import httpx
        import pydantic

        from linli.datahub import EndpointConfig
        from linli.errors import ConfigurationError, ValidationError

        policy = {f: "mask" for f in mask or []} | {f: "drop" for f in drop or []} | {f: "keep" for f in keep or []}
        values: dict[str, object] = {"url": url, "kinds": [k.strip() for k in kinds.split(",") if k.strip()],
                                     "batch_size": batch_size}
        if policy:
            values["field_policy"] = policy
        try:  # a bad value is refused before anything is saved
            EndpointConfig.model_validate({"name": name, **values})
        except pydantic.ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ValidationError(f"endpoint {name!r} not saved: {problems}",
                                  hint="a field policy action is keep, mask or drop; see --help") from err
        blocks = importlib.import_module("blocks.datahub")  # the CLI wires the layers, as `linli serve` does
        block = blocks.DatahubEndpoint.model_validate(values)
        try:
            block.save(name, overwrite=True)
        except httpx.HTTPError as err:
            raise ConfigurationError(f"cannot save the endpoint block at {settings.prefect_api_url}: {err}",
                                     hint="start Prefect (`linli demo`, or a server with LINLI_PREFECT__API_URL "
                                          "pointing at it) and try again") from err
        _cli().console.print(t("done", str(settings.language),
                               what=f"data-hub endpoint {name} → {url} ({block.field_policy})"))

    _cli()._run(work)


@patrol_app.command("import")
def patrol_import(path: CsvFile, dry_run: DryRun = False) -> None:
    """Import patrol routes from CSV: one checkpoint per row, in the order the route is walked.

    Columns: route_code, route_name, community, lead (staff id or name), checkpoint_code,
    checkpoint_name, location, window_start, window_end (HH:MM local), grace_minutes.
    """

    def work(settings: Settings) -> None:
        from linli import db
        from linli.errors import ValidationError
        from linli.patrol import import_routes_csv

        lang = str(settings.language)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise ValidationError(f"cannot read {path}: {err}", hint="give a UTF-8 CSV file") from err
        with db.session_scope() as session:
            result = import_routes_csv(session, text, dry_run=dry_run, by=CLI_USER.actor)
        console = _cli().console
        if result.errors:
            table = Table(t("import_line", lang), t("import_field", lang), t("import_problem", lang))
            for err in result.errors:
                table.add_row(str(err.line), err.field, err.message)
            console.print(table)
        key = "import_dry_run" if dry_run else "import_done"
        bad = len({err.line for err in result.errors})  # a row may have several problems
        console.print(t(key, lang, kind="patrol", rows=result.rows, good=result.imported, bad=bad))
        if result.errors:
            raise typer.Exit(1)

    _cli()._run(work)


@patrol_app.command("routes")
def patrol_routes() -> None:
    """Every patrol route: community, security lead and its checkpoints in order."""

    def work(settings: Settings) -> None:
        from linli import db
        from linli.patrol import list_routes

        with db.session_scope() as session:
            routes = list_routes(session)
        # folded, never cut with an ellipsis: a code is what a guard's tag reads
        table = Table(*(Column(h, overflow="fold") for h in ("route", "name", "community", "lead", "#", "checkpoint",
                                                             "window", "grace")))
        for route in routes:
            for cp in route.checkpoints:
                first = cp.seq == route.checkpoints[0].seq
                table.add_row(*((route.code, route.name, route.community, route.lead or "—") if first else ("",) * 4),
                              str(cp.seq), f"{cp.code} {cp.name}", f"{cp.window_start}–{cp.window_end}",
                              f"{cp.grace_minutes} min")
        _cli().console.print(table)

    _cli()._run(work)
