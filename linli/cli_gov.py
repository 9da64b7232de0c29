"""`linli api`, `linli apikey …` and `linli work …`: the intake API, its keys, and work on cases from a terminal."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import select

from linli import db
from linli.errors import ValidationError
from linli.i18n import t
from linli.settings import Settings

api_app = typer.Typer(help="Serve the Open311 intake API on 127.0.0.1.", invoke_without_command=True)
apikey_app = typer.Typer(help="API keys for Open311 clients (stored hashed).", no_args_is_help=True)
work_app = typer.Typer(help="Claim, accept, note progress, resolve, reassign or reject a case.",
                       no_args_is_help=True)
policy_app = typer.Typer(help="The governance policy (a Prefect block admins edit).", no_args_is_help=True)
console = Console()


# cli.py imports this module to add its sub-apps; its helpers are imported when a command runs.
def _run(work: Any) -> Any:
    from linli.cli import _run as run

    return run(work)


def _announce(settings: Settings, events: list[Any]) -> None:
    from linli.cli import _announce as announce

    announce(settings, events)


@api_app.callback()
def api(port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default LINLI_GOVERNANCE__API_PORT).")]
        = None, host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 only inside a container, "
                                                      "whose port is published on 127.0.0.1.")] = "127.0.0.1") -> None:
    """Serve Open311 GeoReport v2 at http://127.0.0.1:PORT/open311/v2/ (OpenAPI at …/openapi.json)."""

    def work(settings: Settings) -> None:
        import uvicorn

        from linli.api import create_app
        from linli.logformat import configure_logging, say

        log_format = settings.ops.log_format
        # uvicorn's own handlers go: its lines (errors, warnings) come out in the chosen format too.
        configure_logging(log_format, settings.ops.process_name or "api",
                          loggers=("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi"))
        db.upgrade(settings.database_url)
        chosen = port or settings.governance.api_port
        say(log_format, logging.getLogger("linli.api"),
            t("api_listening", str(settings.language), url=f"http://{host}:{chosen}/open311/v2/"), console.print)
        uvicorn.run(create_app(settings), host=host, port=chosen, log_level="warning", log_config=None)

    _run(work)


@apikey_app.command("create")
def apikey_create(name: Annotated[str, typer.Argument(help="Who gets it, e.g. hotline-12345.")]) -> None:
    """Create a key and print it once (only its hash is kept)."""

    def work(settings: Settings) -> None:
        from linli.apikeys import create_key

        db.upgrade(settings.database_url)
        with db.session_scope() as session:
            _row, plain = create_key(session, name)
        console.print(t("apikey_created", str(settings.language), name=name))
        print(plain)

    _run(work)


@apikey_app.command("list")
def apikey_list() -> None:
    """List keys by name and prefix (never the keys themselves)."""

    def work(settings: Settings) -> None:
        from linli.models import ApiKey

        table = Table("name", "prefix", "created (UTC)", "revoked")
        with db.session_scope() as session:
            for row in session.exec(select(ApiKey).order_by(ApiKey.id)).all():
                table.add_row(row.name, row.prefix + "…", f"{row.created_at:%Y-%m-%d %H:%M}",
                              f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "")
        console.print(table)

    _run(work)


@apikey_app.command("revoke")
def apikey_revoke(name: str) -> None:
    """Revoke a key: clients using it are refused from now on."""

    def work(settings: Settings) -> None:
        from linli.apikeys import revoke_key

        with db.session_scope() as session:
            revoke_key(session, name)
        console.print(t("done", str(settings.language), what=f"revoked {name}"))

    _run(work)


def _config(settings: Settings) -> Any:
    from linli.loop import LoopConfig
    from linli.policy import load_policy

    policy = load_policy(settings.governance.policy_block) if _prefect_up(settings) else None
    return LoopConfig.from_settings(settings, policy)


def _prefect_up(settings: Settings) -> bool:
    from linli.cli import _prefect_reachable

    return _prefect_reachable(settings)


def _step(work_fn: Any) -> None:
    def work(settings: Settings) -> None:
        with db.session_scope() as session:
            result = work_fn(session, settings)
        console.print(t("done", str(settings.language), what=f"{result.case_number} → {result.status}"))
        _announce(settings, result.events)
        if result.notifications:
            from linli.notify import AppriseNotifier, deliver

            with db.session_scope() as session:
                deliver(session, result.notifications, notifier=AppriseNotifier(settings.notify.timeout_seconds),
                        global_urls=settings.notify.urls)

    _run(work)


def _photo_bytes(photo: Path | None) -> bytes | None:
    if photo is None:
        return None
    if not photo.is_file():
        raise ValidationError(f"no photo file at {photo}", field="photo", hint="check the path")
    return photo.read_bytes()


Actor = Annotated[str, typer.Option(help="Who acts: staff:ID or volunteer:ID.")]


@work_app.command("claim")
def work_claim(number: str, volunteer: Annotated[int, typer.Option(help="Your volunteer id.")]) -> None:
    """Claim a case offered to volunteers (抢单); one claim wins."""
    from linli.loop.work import claim

    _step(lambda s, st: claim(s, number, volunteer_id=volunteer, config=_config(st)))


@work_app.command("accept")
def work_accept(number: str, actor: Actor) -> None:
    """Accept a case assigned to you or claimed by you."""
    from linli.loop.work import accept

    _step(lambda s, st: accept(s, number, actor=actor))


@work_app.command("progress")
def work_progress(number: str, actor: Actor, note: Annotated[str, typer.Option(help="What happened.")]) -> None:
    """Add a progress note."""
    from linli.loop.work import progress

    _step(lambda s, st: progress(s, number, actor=actor, note=note))


@work_app.command("resolve")
def work_resolve(number: str, actor: Actor, note: Annotated[str, typer.Option(help="What was done.")] = "",
                 photo: Annotated[Path | None, typer.Option(help="After-photo (JPEG, PNG, WebP).")] = None) -> None:
    """Resolve a case, optionally with an after-photo."""
    from linli.loop.work import resolve
    from linli.storage import make_store

    _step(lambda s, st: resolve(s, number, actor=actor, note=note, store=make_store(st), photo=_photo_bytes(photo),
                                max_photo_bytes=st.storage.max_photo_bytes))


@work_app.command("reassign")
def work_reassign(number: str, reason: Annotated[str, typer.Option(help="Why it moves.")],
                  by: Annotated[str, typer.Option(help="Who moves it: staff:ID.")],
                  staff: Annotated[int | None, typer.Option(help="Reassign to this staff id.")] = None,
                  team: Annotated[str | None, typer.Option(help="Transfer to this team.")] = None) -> None:
    """Reassign to a person or transfer to a team, with a reason."""
    from linli.loop.work import reassign

    _step(lambda s, st: reassign(s, number, by=by, reason=reason, config=_config(st), to_staff=staff, to_team=team))


@work_app.command("reject")
def work_reject(number: str, reason: Annotated[str, typer.Option(help="Why it is not taken.")],
                by: Annotated[str, typer.Option(help="Who rejects: staff:ID.")]) -> None:
    """Reject a reported or assessing case with a reason (the reporter is told)."""
    from linli.loop.assess import reject
    from linli.loop.common import get_case

    _step(lambda s, st: reject(s, get_case(s, number), reason=reason, actor=by, config=_config(st)))


@policy_app.command("show")
def policy_show() -> None:
    """Print the policy the next run will use (the block, or the defaults when none is saved)."""

    def work(settings: Settings) -> None:
        config = _config(settings)
        console.print_json(config.policy.model_dump_json())

    _run(work)


@policy_app.command("check")
def policy_check(path: Annotated[Path, typer.Argument(help="A policy as JSON.")]) -> None:
    """Validate a policy file and say what is wrong, field by field."""

    def work(settings: Settings) -> None:
        from linli.policy import parse_policy

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValidationError(f"cannot read {path} as JSON: {err}", field="path") from err
        parse_policy(data)
        console.print(t("policy_ok", str(settings.language), path=str(path)))

    _run(work)
