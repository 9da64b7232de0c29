"""Registry tasks for DAG steps: patrol check, retention purge, elderly-care watch, access-credential checks."""

from __future__ import annotations

from typing import Any

from prefect import task

from linli.access import face_failures, void_unused_faces
from linli.care import SilentResident, find_silent, open_welfare_checks
from linli.dag.registry import register
from linli.db import session_scope
from linli.loop import LoopConfig
from linli.models import utcnow
from linli.patrol import check_rounds
from linli.people import deliver_queued
from linli.retention import RetentionPolicy, purge
from linli.settings import get_settings
from tasks.common import transient_only

RETRY = {"retries": 2, "retry_delay_seconds": [1, 5], "retry_condition_fn": transient_only}


@register("patrol.check_rounds")
@task(name="check patrol rounds", **RETRY)
async def check_patrol_rounds() -> dict[str, list[str]]:
    """Record today's late and missed checkpoints and alert each route's security lead."""
    settings = get_settings()
    with session_scope() as session:
        found = check_rounds(session, now=utcnow(), tz=settings.timezone, language=str(settings.language),
                             templates_dir=settings.templates_dir)
    deliver_queued(found.notifications, settings=settings)
    return {"late": found.late, "missed": found.missed}


@register("retention.purge")
@task(name="purge expired personal data", **RETRY)
async def purge_expired(closed_case_days: int = 0, telemetry_days: int = 0, access_days: int = 0,
                        patrol_days: int = 0) -> dict[str, int]:
    """Anonymise old closed cases, delete old device and patrol records; 0 means the configured period."""
    people = get_settings().people
    policy = RetentionPolicy(
        closed_case_days=closed_case_days or people.closed_case_retention_days,
        telemetry_days=telemetry_days or people.telemetry_retention_days,
        access_days=access_days or people.access_retention_days,
        patrol_days=patrol_days or people.patrol_retention_days,
        audit_days=people.audit_retention_days)
    with session_scope() as session:
        return purge(session, now=utcnow(), policy=policy)


@register("care.find_silent")
@task(name="find silent residents", **RETRY)
async def find_silent_residents(default_hours: int = 0) -> list[SilentResident]:
    """Residents living alone with no door, access or other activity for their watch hours (0 = setting)."""
    settings = get_settings()
    with session_scope() as session:
        return find_silent(session, now=utcnow(), default_hours=default_hours or settings.people.care_watch_hours)


@register("care.open_welfare_checks")
@task(name="open welfare checks", **RETRY)
async def welfare_checks(residents: list[SilentResident]) -> dict[str, Any]:
    """A welfare-check case per silent resident for their grid worker (voice too when configured); family told."""
    settings = get_settings()
    with session_scope() as session:
        outcome = open_welfare_checks(session, residents, config=LoopConfig.from_settings(settings))
    counts = deliver_queued(outcome.notifications, settings=settings)
    voice = deliver_queued(outcome.voice, settings=settings, extra_urls=settings.people.voice_urls)
    return {"cases": outcome.cases, "family": counts, "grid_workers": voice}


@register("access.face_failures")
@task(name="face failures → fallback notice", **RETRY)
async def face_failure_notices(minutes: int = 0, threshold: int = 0) -> list[int]:
    """Residents whose face failed repeatedly at a gate within minutes get the fallbacks; so does the desk."""
    settings = get_settings()
    people = settings.people
    with session_scope() as session:
        outcome = face_failures(session, now=utcnow(), minutes=minutes or people.face_failure_minutes,
                                threshold=threshold or people.face_failures, language=str(settings.language),
                                templates_dir=settings.templates_dir)
    deliver_queued(outcome.notifications, settings=settings)
    return outcome.residents


@register("access.void_unused_faces")
@task(name="void unused face credentials", **RETRY)
async def void_faces(days: int = 0) -> list[int]:
    """Void face credentials unused for `days` (0 = the policy setting, 15 by default); tell each resident."""
    settings = get_settings()
    with session_scope() as session:
        outcome = void_unused_faces(session, now=utcnow(), days=days or settings.people.face_unused_days,
                                    language=str(settings.language), templates_dir=settings.templates_dir)
    deliver_queued(outcome.notifications, settings=settings)
    return outcome.residents
