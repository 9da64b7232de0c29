"""Cases and everything that happens to them: timeline, assignments, photos, feedback."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from linli.models.base import created_at_field, enum_field, timestamp_field


class CaseStatus(StrEnum):
    """Where a case stands in the closed loop (the transitions live in linli.statemachine)."""

    reported = "reported"
    assessing = "assessing"
    dispatched = "dispatched"
    in_progress = "in_progress"
    resolved = "resolved"
    closed = "closed"
    merged = "merged"
    rejected = "rejected"
    reopened = "reopened"


class CaseSource(StrEnum):
    """Where a case came from."""

    resident = "resident"
    grid_worker = "grid_worker"
    device_alarm = "device_alarm"
    device_health = "device_health"
    care_watch = "care_watch"
    patrol = "patrol"
    hotline = "hotline"
    api = "api"


class Category(SQLModel, table=True):
    """A case category (设施报修, 环境卫生 …) with the team that handles it and its SLA."""

    __tablename__ = "category"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True, index=True)
    name_zh: str = Field(max_length=50)
    name_en: str = Field(max_length=80)
    team: str = Field(max_length=50, description="Staff team that takes these cases.")
    sla_hours: float = Field(gt=0, description="Hours to resolve before the case escalates.")
    warning_hours: float = Field(ge=0, description="Hours before the deadline when the assignee is warned.")
    keywords: str = Field(default="", max_length=500, description="Comma-separated words that suggest it.")


class Case(SQLModel, table=True):
    """A problem walking the closed loop 发现 → 上报 → 研判 → 处置 → 评价."""

    __tablename__ = "case"
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True, index=True, description="Public case number.")
    community_id: int = Field(foreign_key="community.id", index=True)
    grid_id: int | None = Field(default=None, foreign_key="grid.id", index=True)
    building_id: int | None = Field(default=None, foreign_key="building.id")
    category_id: int = Field(foreign_key="category.id", index=True)
    source: CaseSource = enum_field(CaseSource, CaseSource.resident)
    description: str = Field(max_length=2000)
    status: CaseStatus = enum_field(CaseStatus, CaseStatus.reported, index=True)
    priority: int = Field(default=2, ge=1, le=3, description="1 urgent, 2 normal, 3 low.")
    lat: float | None = None
    lon: float | None = None
    reporter_id: int | None = Field(default=None, foreign_key="resident.id", index=True)
    reporter_name: str = Field(default="", max_length=50)
    assignee_id: int | None = Field(default=None, foreign_key="staff.id", index=True)
    escalation_level: int = Field(default=0, ge=0, le=2, description="0 community, 1 street, 2 district.")
    merged_into_id: int | None = Field(default=None, foreign_key="case.id")
    reject_reason: str = Field(default="", max_length=500)
    created_at: datetime = created_at_field(index=True)
    updated_at: datetime = created_at_field()
    due_at: datetime | None = timestamp_field(index=True)
    warn_at: datetime | None = timestamp_field()
    warned_at: datetime | None = timestamp_field()
    assessed_at: datetime | None = timestamp_field()
    dispatched_at: datetime | None = timestamp_field()
    resolved_at: datetime | None = timestamp_field()
    closed_at: datetime | None = timestamp_field(index=True)
    rating_requested_at: datetime | None = timestamp_field()


class CaseEvent(SQLModel, table=True):
    """One line of a case's timeline: who did what, when, from which state to which, and why."""

    __tablename__ = "case_event"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    at: datetime = created_at_field()
    actor: str = Field(max_length=80, description="'system', 'staff:3', 'resident:7', 'flow:assess' …")
    action: str = Field(max_length=40, description="transition, assigned, escalated, notified, rated …")
    from_status: CaseStatus | None = enum_field(CaseStatus, None, nullable=True)
    to_status: CaseStatus | None = enum_field(CaseStatus, None, nullable=True)
    reason: str = Field(default="", max_length=1000)


class Assignment(SQLModel, table=True):
    """Who was given a case, when they accepted, and when it ended."""

    __tablename__ = "assignment"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    assigned_at: datetime = created_at_field()
    accepted_at: datetime | None = timestamp_field()
    ended_at: datetime | None = timestamp_field()
    active: bool = Field(default=True, index=True)
    reason: str = Field(default="", max_length=500)


class PhotoKind(StrEnum):
    """Before (the report) or after (the fix)."""

    before = "before"
    after = "after"


class CasePhoto(SQLModel, table=True):
    """A photo of a case, stored in the object store under `key` (EXIF stripped)."""

    __tablename__ = "case_photo"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    kind: PhotoKind = enum_field(PhotoKind, PhotoKind.before)
    key: str = Field(max_length=300)
    content_type: str = Field(max_length=50)
    size: int
    created_at: datetime = created_at_field()


class Feedback(SQLModel, table=True):
    """The reporter's rating of a resolved case (评价)."""

    __tablename__ = "feedback"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    rating: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=1000)
    by: str = Field(max_length=80)
    auto: bool = Field(default=False, description="Closed as satisfied by default, nobody rated.")
    at: datetime = created_at_field(index=True)
