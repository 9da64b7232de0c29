"""People: residents who report, staff who handle, volunteers who claim."""

from __future__ import annotations

from enum import StrEnum

from sqlmodel import Field, SQLModel

from linli.models.base import enum_field


class ResidentKind(StrEnum):
    """常住 / 流动 / 重点: resident, floating, key-tagged."""

    resident = "resident"
    floating = "floating"
    key = "key"


class StaffRole(StrEnum):
    """What a staff member does."""

    grid_worker = "grid_worker"
    property_handler = "property_handler"
    community_worker = "community_worker"
    team_lead = "team_lead"
    street_officer = "street_officer"
    district_officer = "district_officer"


class Resident(SQLModel, table=True):
    """A resident (住户成员); personal fields are masked wherever shown."""

    __tablename__ = "resident"
    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id", index=True)
    building_id: int | None = Field(default=None, foreign_key="building.id", index=True)
    name: str = Field(max_length=50)
    phone: str = Field(default="", max_length=20)
    kind: ResidentKind = enum_field(ResidentKind, ResidentKind.resident)
    contact_url: str = Field(default="", max_length=500, description="Apprise URL reaching this resident.")


class Staff(SQLModel, table=True):
    """A staff member: grid worker, property handler, community worker, team lead, officer."""

    __tablename__ = "staff"
    id: int | None = Field(default=None, primary_key=True)
    community_id: int | None = Field(default=None, foreign_key="community.id", index=True)
    name: str = Field(max_length=50)
    phone: str = Field(default="", max_length=20)
    role: StaffRole = enum_field(StaffRole)
    team: str = Field(max_length=50, index=True, description="Team that takes a category's cases.")
    level: int = Field(default=0, ge=0, le=2, description="0 community, 1 street office, 2 district.")
    on_duty: bool = Field(default=True)
    max_open: int = Field(default=10, ge=1, description="Most open assignments at once.")
    contact_url: str = Field(default="", max_length=500, description="Apprise URL reaching this person.")


class Volunteer(SQLModel, table=True):
    """A volunteer (志愿者) who may claim requests from the pool."""

    __tablename__ = "volunteer"
    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id", index=True)
    grid_id: int | None = Field(default=None, foreign_key="grid.id", index=True,
                                description="The grid they serve; empty: any grid of their community.")
    name: str = Field(max_length=50)
    phone: str = Field(default="", max_length=20)
    skills: str = Field(default="", max_length=200, description="Comma-separated category codes.")
    max_open_claims: int = Field(default=2, ge=1)
    contact_url: str = Field(default="", max_length=500)
