"""Retention: personal data kept only as long as needed — purged or anonymised by a scheduled DAG.

Closed cases keep their facts (category, place, times, ratings) but lose who reported them; raw
device data (telemetry, access and vehicle records, device events) and patrol scans are deleted
(device data through `linli.telemetry.expire`: dropped by monthly partition on PostgreSQL, and
telemetry rolled up into hourly aggregates before it goes);
expired login sessions and old audit lines go too. Tables that are not installed are skipped,
so the same purge serves an installation with or without devices.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import Table, delete, or_, update
from sqlmodel import Session, SQLModel, col

from linli.models import Case, CaseStatus, Feedback
from linli.models.registry import AuditEntry, LoginSession, PatrolScan
from linli.telemetry import expire


class RetentionPolicy(BaseModel):
    """How many days each kind of record is kept (from LINLI_PEOPLE__*_RETENTION_DAYS by default)."""

    closed_case_days: int = Field(default=365, ge=1, description="Closed cases: reporter removed after this.")
    telemetry_days: int = Field(default=90, ge=1, description="Telemetry and device events: deleted after this.")
    access_days: int = Field(default=180, ge=1, description="Access and vehicle records: deleted after this.")
    patrol_days: int = Field(default=365, ge=1, description="Patrol scans: deleted after this.")
    audit_days: int = Field(default=3 * 365, ge=30, description="Audit lines: deleted after this.")


# Device tables (from the devices issue) by name: table → (timestamp column, which period applies).
DEVICE_TABLES: dict[str, tuple[str, str]] = {
    "telemetry": ("ts", "telemetry_days"),
    "device_event": ("ts", "telemetry_days"),
    "access_record": ("ts", "access_days"),
    "vehicle_record": ("ts", "access_days"),
}


def purge(session: Session, *, now: datetime, policy: RetentionPolicy) -> dict[str, int]:
    """Anonymise and delete what is past its period; return counts per kind. The caller commits."""
    counts: dict[str, int] = {}
    cutoff = now - timedelta(days=policy.closed_case_days)
    old_closed = (col(Case.status) == CaseStatus.closed) & (col(Case.closed_at) < cutoff)
    anonymise = (update(Case).where(old_closed, or_(col(Case.reporter_id).is_not(None), Case.reporter_name != ""))
                 .values(reporter_id=None, reporter_name=""))
    counts["cases_anonymised"] = session.execute(anonymise).rowcount  # type: ignore[attr-defined]
    closed_ids = Case.__table__.select().with_only_columns(Case.__table__.c.id).where(  # type: ignore[attr-defined]
        Case.__table__.c.status == CaseStatus.closed.value, Case.__table__.c.closed_at < cutoff)  # type: ignore[attr-defined]
    session.execute(update(Feedback).where(col(Feedback.case_id).in_(closed_ids), Feedback.by != "anonymised")
                    .values(by="anonymised", comment=""))
    tables = SQLModel.metadata.tables
    for name, (_column, period) in DEVICE_TABLES.items():
        table: Table | None = tables.get(name)
        if table is None:
            continue
        # One place expires device data: whole monthly partitions on PostgreSQL, telemetry rolled up first.
        counts[name] = expire(session.connection(), name, now - timedelta(days=getattr(policy, period)))["rows"]
    counts["patrol_scans"] = session.execute(delete(PatrolScan).where(
        col(PatrolScan.at) < now - timedelta(days=policy.patrol_days))).rowcount  # type: ignore[attr-defined]
    counts["sessions"] = session.execute(delete(LoginSession).where(
        col(LoginSession.expires_at) < now)).rowcount  # type: ignore[attr-defined]
    counts["audit"] = session.execute(delete(AuditEntry).where(
        col(AuditEntry.at) < now - timedelta(days=policy.audit_days))).rowcount  # type: ignore[attr-defined]
    session.add(AuditEntry(actor="flow:retention", action="purge", entity="retention",
                           detail=", ".join(f"{k}={v}" for k, v in counts.items())))
    session.flush()
    return counts
