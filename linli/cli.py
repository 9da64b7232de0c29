"""The `linli` command: demo, database, reports and cases, from a terminal."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Column, Table
from sqlalchemy import func
from sqlmodel import col, select

from linli import db
from linli.cli_gov import api_app, apikey_app, policy_app, work_app
from linli.errors import LinliError
from linli.i18n import t
from linli.settings import Settings, apply_prefect_environment, get_settings

app = typer.Typer(help="Linli (邻里): smart-community governance on Prefect.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
case_app = typer.Typer(help="Act on one case as staff or resident.", no_args_is_help=True)
dev_app = typer.Typer(help="Tools for trying Linli locally.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(case_app, name="case")
app.add_typer(dev_app, name="dev")
app.add_typer(api_app, name="api")
app.add_typer(apikey_app, name="apikey")
app.add_typer(work_app, name="work")
app.add_typer(policy_app, name="policy")
app.add_typer(__import__("linli.cli_devices", fromlist=["cli_devices"]).device_commands)  # ingest, simulate, devices
app.add_typer(__import__("linli.cli_ops", fromlist=["cli_ops"]).ops_commands)  # up, status
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def _settings() -> Settings:
    settings = get_settings()
    apply_prefect_environment(settings)
    return settings


@contextmanager
def _errors(lang: str) -> Iterator[None]:
    """Turn Linli's errors into a clear message and exit code 2, never a traceback."""
    try:
        yield
    except LinliError as err:
        err_console.print(f"[bold red]{t('error', lang)}:[/] {err.message}")
        if err.hint:
            err_console.print(f"[yellow]{t('hint', lang)}:[/] {err.hint}")
        raise typer.Exit(2) from err


def _run(work: Callable[[Settings], T]) -> T:
    settings = _settings()
    with _errors(str(settings.language)):
        return work(settings)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate Linli's database (SQLite or PostgreSQL) to the latest schema."""

    def work(settings: Settings) -> None:
        db.upgrade(settings.database_url)
        console.print(t("db_upgraded", str(settings.language), url=_safe_url(settings.database_url)))

    _run(work)


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def seed() -> None:
    """Create the sample street office (two communities, people, the seeds' categories)."""

    def work(settings: Settings) -> None:
        from linli.seed import seed_sample

        db.upgrade(settings.database_url)
        with db.session_scope() as session:
            summary = seed_sample(session)
        console.print(t("seeded", str(settings.language), summary=summary))

    _run(work)


def _prefect_reachable(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.prefect_api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _announce(settings: Settings, events: list[Any]) -> None:
    from linli.events import PrefectEventBus

    if not _prefect_reachable(settings):
        err_console.print(f"[yellow]{t('prefect_down', str(settings.language), url=settings.prefect_api_url)}[/]")
        return
    PrefectEventBus().emit(events)


@app.command()
def report(
    text: Annotated[str, typer.Argument(help="What is wrong, in the reporter's words.")],
    category: Annotated[str | None, typer.Option(help="Category code (see `linli categories`).")] = None,
    photo: Annotated[Path | None, typer.Option(help="A JPEG, PNG or WebP photo.", exists=False)] = None,
    lat: Annotated[float | None, typer.Option(help="Latitude.")] = None,
    lon: Annotated[float | None, typer.Option(help="Longitude.")] = None,
    building: Annotated[str | None, typer.Option(help="Building code, e.g. XFL-B1.")] = None,
    community: Annotated[str | None, typer.Option(help="Community code, e.g. XFL.")] = None,
    reporter: Annotated[int | None, typer.Option(help="Reporting resident's id.")] = None,
    reporter_phone: Annotated[str | None, typer.Option(help="Reporting resident's phone.")] = None,
) -> None:
    """File a report (随手拍) from the command line; the flows take it from there."""

    def work(settings: Settings) -> None:
        from linli.errors import ValidationError
        from linli.loop import LoopConfig
        from linli.loop.intake import file_report, parse_report
        from linli.storage import make_store

        data: dict[str, object] = {"description": text, "category": category, "lat": lat, "lon": lon,
                                   "building": building, "community": community, "reporter_id": reporter,
                                   "reporter_phone": reporter_phone}
        parsed = parse_report({k: v for k, v in data.items() if v is not None})
        photo_bytes = None
        if photo is not None:
            if not photo.is_file():
                raise ValidationError(f"no photo file at {photo}", field="photo", hint="check the path")
            photo_bytes = photo.read_bytes()
        with db.session_scope() as session:
            result = file_report(session, parsed, config=LoopConfig.from_settings(settings),
                                 store=make_store(settings), photo=photo_bytes,
                                 max_photo_bytes=settings.storage.max_photo_bytes)
        console.print(t("report_filed", str(settings.language), number=result.case_number, category=result.detail))
        _announce(settings, result.events)

    _run(work)


@app.command()
def categories() -> None:
    """List the case categories with their team and SLA."""

    def work(settings: Settings) -> None:
        from linli.models import Category

        table = Table("code", "名称 / name", "team", "SLA h", "warn h")
        with db.session_scope() as session:
            for c in session.exec(select(Category).order_by(Category.id)).all():
                table.add_row(c.code, f"{c.name_zh} / {c.name_en}", c.team, f"{c.sla_hours:g}", f"{c.warning_hours:g}")
        console.print(table)

    _run(work)


@app.command()
def cases(
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses (repeat the option).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 30,
) -> None:
    """List cases, newest first."""

    def work(settings: Settings) -> None:
        from linli.models import Case, CaseStatus, Category

        lang = str(settings.language)
        if status:
            bad = [s for s in status if s not in CaseStatus.__members__]
            if bad:
                raise LinliError(f"unknown status {', '.join(bad)}", hint="use: " + ", ".join(CaseStatus))
        with db.session_scope() as session:
            query = select(Case, Category).join(Category, col(Category.id) == Case.category_id)
            if status:
                query = query.where(col(Case.status).in_(status))
            rows = session.exec(query.order_by(col(Case.id).desc()).limit(limit)).all()
            counts = dict(session.exec(select(Case.status, func.count()).group_by(Case.status)).all())
        if not rows:
            console.print(t("no_cases", lang))
            return
        # Every column but the description keeps its width: a case number is quoted on the phone.
        # Fits 80 columns: only the description gives way; a case number is quoted on the phone.
        widths = {"number": len(rows[0][0].number), "status": 11, "category": 8, "level": 5, "created": 11}
        table = Table(*(Column(name, no_wrap=True, min_width=w) for name, w in widths.items()),
                      Column("description", ratio=1))
        for case, cat in rows:
            table.add_row(case.number, str(case.status), cat.name_zh if lang == "zh" else cat.name_en,
                          str(case.escalation_level), f"{case.created_at:%m-%d %H:%M}", case.description)
        console.print(table)
        console.print(t("demo_summary", lang, counts=", ".join(f"{k}={v}" for k, v in sorted(counts.items()))))

    _run(work)


@case_app.command("show")
def case_show(number: Annotated[str, typer.Argument(help="Case number or id.")]) -> None:
    """Show one case and its whole timeline."""

    def work(settings: Settings) -> None:
        from linli.loop.common import get_case
        from linli.models import CaseEvent

        with db.session_scope() as session:
            case = get_case(session, number)
            events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                  .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
        console.print(Panel(f"{case.description}\nstatus: {case.status} · priority {case.priority} · "
                            f"level {case.escalation_level} · assignee staff:{case.assignee_id}",
                            title=case.number))
        table = Table("at (UTC)", "actor", "action", "from → to", "why")
        for e in events:
            move = f"{e.from_status or ''} → {e.to_status or ''}" if e.to_status else ""
            table.add_row(f"{e.at:%m-%d %H:%M:%S}", e.actor, e.action, move, e.reason)
        console.print(table)

    _run(work)


def _case_step(step: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    def work(settings: Settings) -> None:
        with db.session_scope() as session:
            result = step(session, *args, **kwargs)
        console.print(t("done", str(settings.language), what=f"{result.case_number} → {result.status}"))
        _announce(settings, result.events)

    _run(work)


@case_app.command("accept")
def case_accept(number: str, staff: Annotated[int, typer.Option(help="Your staff id.")]) -> None:
    """Accept a case assigned to you (dispatched → in_progress)."""
    from linli.loop.handle import accept

    _case_step(accept, number, staff_id=staff)


@case_app.command("resolve")
def case_resolve(number: str, staff: Annotated[int, typer.Option(help="Your staff id.")],
                 note: Annotated[str, typer.Option(help="What was done.")] = "") -> None:
    """Mark a case you handle as resolved; the reporter is then asked to rate it."""
    from linli.loop.handle import resolve

    _case_step(resolve, number, staff_id=staff, note=note)


@case_app.command("rate")
def case_rate(number: str, resident: Annotated[int, typer.Option(help="Your resident id (the reporter).")],
              rating: Annotated[int, typer.Option(min=1, max=5, help="1 (bad) … 5 (good).")],
              comment: Annotated[str, typer.Option(help="What you think.")] = "") -> None:
    """Rate a resolved case you reported: a good rating closes it, a bad one reopens it."""
    from linli.loop.evaluate import rate

    _case_step(rate, number, resident_id=resident, rating=rating, comment=comment)


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(
        help="Once everything is up, run this many seconds, then stop cleanly (smoke tests).")] = None,
    prefect_port: Annotated[int | None, typer.Option(help="Port of the demo's Prefect server.")] = None,
    dashboard_port: Annotated[int | None, typer.Option(help="Port of the dashboard.")] = None,
    no_simulator: Annotated[bool, typer.Option("--no-simulator", help="Do not simulate residents and staff.")] = False,
    report_every: Annotated[float, typer.Option(min=0.5, help="Seconds between simulated reports.")] = 10.0,
) -> None:
    """Run a whole street office here: Prefect server, the loop's flows, the dashboard and a simulator."""
    settings = get_settings()
    updates: dict[str, Any] = {}
    if prefect_port:
        updates["prefect"] = settings.prefect.model_copy(update={"port": prefect_port})
    if dashboard_port:
        updates["dashboard"] = settings.dashboard.model_copy(update={"port": dashboard_port})
    settings = settings.model_copy(update=updates)
    apply_prefect_environment(settings)
    lang = str(settings.language)
    with _errors(lang):
        _demo(settings, duration=duration, simulate=not no_simulator, report_every=report_every)


def _demo(settings: Settings, *, duration: float | None, simulate: bool, report_every: float) -> None:
    from linli.demo import ProcessGroup, run_until, start_stack
    from linli.events import PrefectEventBus
    from linli.loop import LoopConfig
    from linli.seed import seed_sample
    from linli.simulator import Simulator, SimulatorPlan

    lang = str(settings.language)
    logging.basicConfig(level=logging.WARNING)
    db.upgrade(settings.database_url)
    from linli.patrol import ensure_demo_route

    with db.session_scope() as session:
        seed_sample(session)
        session.flush()
        ensure_demo_route(session)  # a round whose skipped stops the patrol-watch DAG reports
    group = ProcessGroup(settings.data_dir.resolve() / "logs")
    stop = threading.Event()
    simulator = None
    try:
        start_stack(settings, group, announce=lambda m: console.print(f"[dim]{m}[/]"))
        ui = f"http://127.0.0.1:{settings.prefect.port}"
        console.print(Panel(
            f"{t('demo_prefect_ui', lang)}: [link={ui}]{ui}[/link]\n"
            f"{t('demo_dashboard', lang)}: http://127.0.0.1:{settings.dashboard.port}\n"
            f"logs: {group.log_dir}\n{t('demo_stop', lang)}", title=t("demo_ready", lang)))
        if simulate:
            simulator = Simulator(engine=db.get_engine(), bus=PrefectEventBus(),
                                  config=LoopConfig.from_settings(settings),
                                  plan=SimulatorPlan(report_every=report_every))
            threading.Thread(target=simulator.run, name="simulator", daemon=True).start()
        run_until(stop, duration, group)
    except KeyboardInterrupt:
        pass
    finally:
        console.print(t("demo_stopping", lang))
        if simulator is not None:
            simulator.stop()
        group.stop()
        _print_counts(lang)


def _print_counts(lang: str) -> None:
    from linli.models import Case

    with db.session_scope() as session:
        counts = dict(session.exec(select(Case.status, func.count()).group_by(Case.status)).all())
    console.print(t("demo_summary", lang, counts=", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "—"))


@app.command()
def serve() -> None:
    """Serve the loop's deployments against the configured Prefect API (without the rest of the demo)."""
    import runpy

    _settings()
    runpy.run_module("flows.serve", run_name="__main__")


@dev_app.command("receiver")
def dev_receiver(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765) -> None:
    """A local notification receiver: point LINLI_NOTIFY__URLS at it and watch messages arrive."""
    from linli.receiver import run_receiver

    settings = _settings()
    lang = str(settings.language)
    console.print(t("receiver_listening", lang, url=f"http://127.0.0.1:{port}",
                    apprise=f"json://127.0.0.1:{port}/linli"))

    def show(message: dict[str, Any]) -> None:
        body = message.get("json") or message.get("body")
        if isinstance(body, dict):
            console.print(Panel(str(body.get("message", body)), title=str(body.get("title", ""))))
        else:
            console.print(body)

    run_receiver(port, show)


from linli.cli_dag import dag_app  # noqa: E402 — the sub-app imports this module's helpers

app.add_typer(dag_app, name="dag")
import linli.cli_datahub  # noqa: E402,F401  (adds datahub endpoint, patrol import, patrol routes)
from linli.cli_people import PEOPLE_APPS  # noqa: E402  (import, user, patrol, notice, access, care)

for _sub, _name in PEOPLE_APPS:
    app.add_typer(_sub, name=_name)
app.add_typer(__import__("linli.cli_infra", fromlist=["infra_app"]).infra_app, name="infra")  # mosquitto, deploy

if __name__ == "__main__":
    app()
