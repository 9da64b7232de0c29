"""`linli import …`, `linli user …`, `linli patrol …`, `linli notice …`: the registry from a terminal.

A terminal user already holds the machine, so these commands act as the administrator "cli";
every change they make is audited under that name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from linli.auth import CurrentUser
from linli.i18n import t
from linli.models.registry import Role
from linli.settings import Settings

import_app = typer.Typer(help="Import the registry from CSV (residents, households, vehicles).", no_args_is_help=True)
user_app = typer.Typer(help="Dashboard accounts and roles.", no_args_is_help=True)
patrol_app = typer.Typer(help="Patrol rounds: routes, scans, the check, findings.", no_args_is_help=True)
notice_app = typer.Typer(help="Community announcements (社区公告).", no_args_is_help=True)
access_app = typer.Typer(help="Access credentials: several methods per resident, only references stored.",
                         no_args_is_help=True)
care_app = typer.Typer(help="Elderly-care watch (居家养老): who is watched, and one run of the watch.",
                       no_args_is_help=True)
CLI_USER = CurrentUser(id=0, username="cli", role=Role.admin, staff_id=None)
DryRun = Annotated[bool, typer.Option("--dry-run", help="Check every row, write nothing.")]
CsvFile = Annotated[Path, typer.Argument(help="A UTF-8 CSV file with a header row.")]


def _run(work: Callable[[Settings], None]) -> None:
    from linli.cli import _run as run  # linli.cli adds these sub-apps at its end (see cli_dag)

    run(work)


def _print(text: str) -> None:
    from linli.cli import console

    console.print(text)


def _import(kind: str, path: Path, dry_run: bool) -> None:
    def work(settings: Settings) -> None:
        from linli import db
        from linli.registry import import_file

        lang = str(settings.language)
        with db.session_scope() as session:
            result = import_file(session, kind, path, dry_run=dry_run, by=CLI_USER.actor)
        if result.errors:
            table = Table(t("import_line", lang), t("import_field", lang), t("import_problem", lang))
            for err in result.errors:
                table.add_row(str(err.line), err.field, err.message)
            from linli.cli import console

            console.print(table)
        key = "import_dry_run" if dry_run else "import_done"
        _print(t(key, lang, kind=kind, rows=result.rows, good=result.imported, bad=len(result.errors)))
        if result.errors:
            raise typer.Exit(1)

    _run(work)


@import_app.command("residents")
def import_residents(path: CsvFile, dry_run: DryRun = False) -> None:
    """Residents: name,phone,id_number,building,unit,room,kind,living_alone,tag,tag_reason."""
    _import("residents", path, dry_run)


@import_app.command("households")
def import_households(path: CsvFile, dry_run: DryRun = False) -> None:
    """Households: building,unit,room."""
    _import("households", path, dry_run)


@import_app.command("vehicles")
def import_vehicles(path: CsvFile, dry_run: DryRun = False) -> None:
    """Vehicles: plate,building,unit,room,permit,permit_until (the household must exist)."""
    _import("vehicles", path, dry_run)


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin, manager, staff, grid_worker or viewer.")],
    staff: Annotated[int | None, typer.Option(help="The staff member (required for grid workers).")] = None,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          help="At least 8 characters (asked when not given).")] = "",
) -> None:
    """Add a dashboard account (the password is stored only as a scrypt hash)."""

    def work(settings: Settings) -> None:
        from linli import db
        from linli.auth import create_user

        with db.session_scope() as session:
            create_user(session, username, password, role, staff_id=staff)
        _print(t("user_added", str(settings.language), username=username, role=role))

    _run(work)


@patrol_app.command("scan")
def patrol_scan(checkpoint: str, by: Annotated[str, typer.Option(help="Who scanned (guard's name or id).")]) -> None:
    """Record a checkpoint scan now."""

    def work(settings: Settings) -> None:
        from linli import db
        from linli.patrol import scan

        with db.session_scope() as session:
            scan(session, checkpoint, by=by, source="cli")
        _print(t("patrol_scanned", str(settings.language), checkpoint=checkpoint))

    _run(work)


@patrol_app.command("today")
def patrol_today() -> None:
    """Today's rounds: each checkpoint's status."""

    def work(settings: Settings) -> None:
        from linli import db
        from linli.models import utcnow
        from linli.patrol import rounds_on

        with db.session_scope() as session:
            rows = rounds_on(session, now=utcnow(), tz=settings.timezone)
        table = Table("route", "#", "checkpoint", "window", "status")
        for r in rows:
            table.add_row(r.route, str(r.seq), r.name, r.window, r.status)
        from linli.cli import console

        console.print(table)

    _run(work)


@patrol_app.command("check")
def patrol_check() -> None:
    """Run the patrol check once (the patrol-watch DAG does this every 10 minutes)."""

    def work(settings: Settings) -> None:
        from linli import db
        from linli.models import utcnow
        from linli.patrol import check_rounds
        from linli.people import deliver_queued

        with db.session_scope() as session:
            found = check_rounds(session, now=utcnow(), tz=settings.timezone, language=str(settings.language),
                                 templates_dir=settings.templates_dir)
        deliver_queued(found.notifications, settings=settings)
        _print(t("patrol_checked", str(settings.language), missed=len(found.missed), late=len(found.late)))

    _run(work)


@notice_app.command("publish")
def notice_publish(
    title: str, text: str,
    community: Annotated[str, typer.Option(help="Community code, e.g. XFL.")],
    building: Annotated[str, typer.Option(help="Only this building.")] = "",
    audience: Annotated[str, typer.Option(help="all, living_alone or vehicle_owners.")] = "all",
    speakers: Annotated[bool, typer.Option("--broadcast", help="Also read it out on the loudspeakers.")] = False,
) -> None:
    """Publish an announcement and deliver it to each recipient through their own channel."""

    def work(settings: Settings) -> None:
        from linli import db
        from linli.announce import publish
        from linli.people import deliver_queued

        with db.session_scope() as session:
            published = publish(session, CLI_USER, title=title, body=text, community=community, building=building,
                                audience=audience, broadcast=speakers, language=str(settings.language),
                                templates_dir=settings.templates_dir)
        counts = deliver_queued(published.notifications, settings=settings)
        if speakers:
            from linli.announce import broadcast
            from linli.devices.commands import MqttPublisher

            mqtt = settings.mqtt
            with MqttPublisher(mqtt.host, mqtt.port, username=mqtt.username,
                               password=mqtt.password.get_secret_value()) as send, db.session_scope() as session:
                counts["loudspeakers"] = len(broadcast(session, send, published.announcement_id,
                                                       requested_by=CLI_USER.actor))
        _print(t("notice_published", str(settings.language), recipients=published.recipients, counts=counts))

    _run(work)


@access_app.command("enrol")
def access_enrol(resident: int, method: str, reference: str) -> None:
    """Give a resident a credential: METHOD (face, card, qr, id_card, fingerprint, app) and the gate's REFERENCE."""

    def work(settings: Settings) -> None:
        from linli import db
        from linli.access import enrol

        with db.session_scope() as session:
            enrol(session, resident, method, reference)
        _print(t("credential_enrolled", str(settings.language), method=method, resident=resident))

    _run(work)


@care_app.command("watch")
def care_watch(
    resident: int,
    hours: Annotated[int, typer.Option(help="Silence (hours) before a welfare check.")] = 24,
    door: Annotated[str, typer.Option(help="Code of the door magnet on the home's door.")] = "",
    family_name: Annotated[str, typer.Option(help="A family contact's name.")] = "",
    family_url: Annotated[str, typer.Option(help="The family contact's Apprise URL (SMS, voice …).")] = "",
) -> None:
    """Mark a resident as living alone and watched (optionally with their door magnet and a family contact)."""

    def work(settings: Settings) -> None:
        from sqlmodel import select

        from linli import db
        from linli.errors import NotFound, ValidationError
        from linli.models import Device, Resident
        from linli.models.registry import FamilyContact, ResidentDetail
        from linli.people import audit

        if not 1 <= hours <= 24 * 14:
            raise ValidationError("hours must be 1–336", field="hours")
        with db.session_scope() as session:
            if session.get(Resident, resident) is None:
                raise NotFound(f"no resident {resident}")
            detail = session.get(ResidentDetail, resident) or ResidentDetail(resident_id=resident)
            detail.living_alone, detail.watch_hours = True, hours
            if door:
                device = session.exec(select(Device).where(Device.code == door)).first()
                if device is None:
                    raise NotFound(f"no device {door!r}", hint="see `linli devices list`")
                detail.door_device_id = device.id
            session.add(detail)
            if family_url:
                session.add(FamilyContact(resident_id=resident, name=family_name or "家属", contact_url=family_url))
            audit(session, actor=CLI_USER.actor, action="change", entity="resident", entity_id=resident,
                  detail="living_alone,watch_hours" + (",door" if door else "") + (",family" if family_url else ""))
        _print(t("care_watching", str(settings.language), resident=resident, hours=hours))

    _run(work)


@care_app.command("check")
def care_check() -> None:
    """Run the watch once (the care-watch DAG does this every 30 minutes)."""

    def work(settings: Settings) -> None:
        from linli import db
        from linli.care import find_silent, open_welfare_checks
        from linli.loop import LoopConfig
        from linli.models import utcnow
        from linli.people import deliver_queued

        with db.session_scope() as session:
            silent = find_silent(session, now=utcnow(), default_hours=settings.people.care_watch_hours)
            outcome = open_welfare_checks(session, silent, config=LoopConfig.from_settings(settings))
        deliver_queued(outcome.notifications, settings=settings)
        deliver_queued(outcome.voice, settings=settings, extra_urls=settings.people.voice_urls)
        _print(t("care_checked", str(settings.language), cases=", ".join(outcome.cases) or "—"))

    _run(work)


PEOPLE_APPS = [(import_app, "import"), (user_app, "user"), (patrol_app, "patrol"), (notice_app, "notice"),
               (access_app, "access"), (care_app, "care")]
