"""Community look-ups for DAG steps: residents to check on, staff to tell, a period's case figures."""

from __future__ import annotations

from prefect import task

from linli.dag.registry import register
from linli.db import session_scope
from linli.models import utcnow
from linli.outreach import CaseDigest, ResidentToVisit, case_digest, key_residents, staff_targets
from tasks.common import transient_only

RETRY = {"retries": 2, "retry_delay_seconds": [1, 5], "retry_condition_fn": transient_only}


@register("people.key_residents")
@task(name="find key residents", **RETRY)
async def find_key_residents(community: str = "") -> list[ResidentToVisit]:
    """Key-tagged residents (重点人员) of a community code, or of all when empty; names masked."""
    with session_scope() as session:
        return key_residents(session, community=community)


@register("people.staff")
@task(name="find staff", **RETRY)
async def find_staff(roles: list[str], community: str = "") -> list[str]:
    """Notification targets of on-duty staff in these roles (e.g. grid_worker, street_officer)."""
    with session_scope() as session:
        return staff_targets(session, roles=roles, community=community)


@register("reports.case_digest")
@task(name="case digest", **RETRY)
async def digest(days: int = 7) -> CaseDigest:
    """Cases opened, closed, open and overdue, ratings and busiest categories over the last `days`."""
    with session_scope() as session:
        return case_digest(session, now=utcnow(), days=days)
