"""Governance tables: API keys, each case's routing and volunteer claims, and notification routes."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from linli.models.base import created_at_field, timestamp_field


class ApiKey(SQLModel, table=True):
    """A key an Open311 client posts with; only its SHA-256 is stored."""

    __tablename__ = "api_key"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, unique=True, index=True, description="Who holds it (hotline, mini-program …).")
    prefix: str = Field(max_length=12, description="First characters of the key, to recognise it in lists.")
    key_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = created_at_field()
    revoked_at: datetime | None = timestamp_field()


class CaseRouting(SQLModel, table=True):
    """The assessment's routing decision for one case, and who took it from the volunteer pool."""

    __tablename__ = "case_routing"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", unique=True, index=True)
    route: str = Field(max_length=20, index=True, description="volunteer_pool, staff_team or external_agency.")
    difficulty: int = Field(default=2, ge=1, le=3)
    team: str = Field(default="", max_length=50, description="Staff team for (fallback) dispatch.")
    agency_code: str = Field(default="", max_length=32)
    pool_until: datetime | None = timestamp_field(index=True)
    volunteer_id: int | None = Field(default=None, foreign_key="volunteer.id", index=True)
    claimed_at: datetime | None = timestamp_field()


class VolunteerClaim(SQLModel, table=True):
    """A volunteer's claim on a case (抢单); active until resolved, released or reassigned."""

    __tablename__ = "volunteer_claim"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    volunteer_id: int = Field(foreign_key="volunteer.id", index=True)
    claimed_at: datetime = created_at_field()
    accepted_at: datetime | None = timestamp_field()
    ended_at: datetime | None = timestamp_field()
    active: bool = Field(default=True, index=True)


class NotifyRoute(SQLModel, table=True):
    """A channel that is not a person: an escalation level's route or an external agency (target 'route:ID')."""

    __tablename__ = "notify_route"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=60, unique=True, index=True, description="'escalation-1', 'agency-legal_aid' …")
    name: str = Field(max_length=100)
    contact_url: str = Field(default="", max_length=1000, description="Apprise URL(s), comma-separated.")
