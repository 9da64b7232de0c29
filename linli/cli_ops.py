"""The operations commands: `linli up` (the production topology as local processes) and `linli status`."""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import Annotated

import typer
from rich.table import Table

from linli.i18n import t
from linli.settings import Settings, get_settings

ops_commands = typer.Typer(help="Run the production topology here and watch it.")


@ops_commands.command()
def up(
    workers: Annotated[int, typer.Option(min=1, max=32, help="Prefect workers serving Linli's deployments.")] = 1,
    ingest: Annotated[int, typer.Option(min=0, max=32, help="Ingest replicas on the shared subscription.")] = 1,
    no_api: Annotated[bool, typer.Option("--no-api", help="Do not start the intake API.")] = False,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Do not start the dashboard.")] = False,
    allow_sqlite: Annotated[bool, typer.Option("--allow-sqlite",
                                               help="Let the Prefect server run on SQLite (a try-out only).")] = False,
    prefect_port: Annotated[int | None, typer.Option(help="Prefect server port (default LINLI_PREFECT__PORT).")]
    = None,
    api_port: Annotated[int | None, typer.Option(help="API port (default LINLI_GOVERNANCE__API_PORT).")] = None,
    dashboard_port: Annotated[int | None, typer.Option(help="Dashboard port (default LINLI_DASHBOARD__PORT).")]
    = None,
    ingest_port: Annotated[int | None, typer.Option(
        help="First ingest replica's status/metrics port, the next +1 … (default LINLI_OPS__INGEST_METRICS_PORT; "
        "0: free ports).")] = None,
) -> None:
    """Start Prefect server (PostgreSQL), workers, ingest replicas, API and dashboard; restart what dies."""
    from linli.cli import _errors, console
    from linli.logformat import configure_logging, say
    from linli.supervisor import UpOptions
    from linli.supervisor import up as run_up

    settings = get_settings()
    lang = str(settings.language)
    configure_logging(settings.ops.log_format, settings.ops.process_name or "up")
    options = UpOptions(
        workers=workers, ingest=ingest, api=not no_api, dashboard=not no_dashboard, allow_sqlite=allow_sqlite,
        prefect_port=prefect_port or settings.prefect.port, api_port=api_port or settings.governance.api_port,
        dashboard_port=dashboard_port or settings.dashboard.port,
        ingest_port=settings.ops.ingest_metrics_port if ingest_port is None else ingest_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    count = 1 + workers + ingest + (not no_api) + (not no_dashboard)

    log = logging.getLogger("linli.up")

    def announce(message: str) -> None:
        say(settings.ops.log_format, log, message, lambda text: console.print(f"[dim]{text}[/]"))
        if message.startswith("started "):
            say(settings.ops.log_format, log, t("up_running", lang, count=count), console.print)
            say(settings.ops.log_format, log, t("up_status_hint", lang, logs=(settings.data_dir / "logs").resolve()),
                console.print)

    with _errors(lang):
        try:
            run_up(settings, options, stop, announce=announce)
        except KeyboardInterrupt:
            pass
    say(settings.ops.log_format, log, t("up_stopped", lang), console.print)


@ops_commands.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """One table of the processes `linli up` runs here: state, uptime, restarts, health, counters.

    Exits 1 when `linli up` is not running or a process is not up and healthy.
    """
    from linli import supervisor
    from linli.cli import _errors, console

    settings: Settings = get_settings()
    lang = str(settings.language)
    with _errors(lang):
        state, rows = supervisor.status(settings.data_dir)
    report = supervisor.as_json(state, rows)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
    else:
        if not report["running"]:
            console.print(f"[red]{t('status_not_running', lang)}[/]")
        table = Table("process", "pid", "state", "uptime", "restarts", "health", "counters / detail")
        for row in rows:
            colour = {"up": "green", "restarting": "yellow"}.get(row.state, "red")
            health = {"ok": "[green]ok[/]", "failing": "[red]failing[/]"}.get(row.health, "—")
            counters = " ".join(f"{k}={v}" for k, v in row.counters.items())
            table.add_row(row.name, str(row.pid or "—"), f"[{colour}]{row.state}[/]", _uptime(row.uptime_seconds),
                          str(row.restarts), health, " · ".join(p for p in (counters, row.detail) if p))
        console.print(table)
        problems = sum(1 for r in rows if r.state != "up" or r.health != "ok")
        if problems:
            console.print(f"[yellow]{t('status_problems', lang, count=problems)}[/]")
    if not report["ok"]:
        raise typer.Exit(1)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
