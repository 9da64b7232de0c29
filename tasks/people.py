"""Registry tasks for DAG steps: the patrol check, the retention purge, and delivering what they queued."""

from __future__ import annotations

from prefect import task

from linli.dag.registry import register
from linli.db import session_scope
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
