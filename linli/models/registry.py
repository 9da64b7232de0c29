"""The community registry and its safeguards: homes, tags, vehicles, rosters, accounts, audit, notices, patrols.

人、车、房、事 — units and households under buildings, residents' ID numbers and tags, vehicles,
staff duty rosters; dashboard accounts and sessions; the audit log; announcements with per-recipient
delivery; patrol routes, checkpoints and scans. Personal fields are stored whole (the authorities
need them) and masked wherever shown (linli/privacy.py); no biometric data is stored anywhere.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from linli.models.base import created_at_field, enum_field, timestamp_field


class Unit(SQLModel, table=True):
    """A unit (单元) of a building."""

    __tablename__ = "unit"
    __table_args__ = (UniqueConstraint("building_id", "code"),)
    id: int | None = Field(default=None, primary_key=True)
    building_id: int = Field(foreign_key="building.id", index=True)
    code: str = Field(max_length=16, description="Unit number within the building, e.g. '1'.")


class Household(SQLModel, table=True):
    """A household (户): one flat, identified by building code + room, e.g. XFL-B1-1-302."""

    __tablename__ = "household"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=48, unique=True, index=True)
    building_id: int = Field(foreign_key="building.id", index=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    room: str = Field(max_length=16)
    created_at: datetime = created_at_field()


class ResidentDetail(SQLModel, table=True):
    """A resident's registry fields beyond the name: household, ID number, living alone, the care watch."""

    __tablename__ = "resident_detail"
    resident_id: int = Field(foreign_key="resident.id", primary_key=True)
    household_id: int | None = Field(default=None, foreign_key="household.id", index=True)
    id_number: str = Field(default="", max_length=18, index=True, description="居民身份证号, masked wherever shown.")
    living_alone: bool = Field(default=False, index=True, description="独居: gets the elderly-care watch.")
    watch_hours: int = Field(default=24, ge=1, le=24 * 14, description="Silence that raises a welfare check.")
    door_device_id: int | None = Field(default=None, foreign_key="device.id",
                                       description="The door magnet on the home's door (care watch).")
    anonymised_at: datetime | None = timestamp_field()
    updated_at: datetime = created_at_field()


class ResidentTag(SQLModel, table=True):
    """A key tag (重点标签) on a resident: why it was given and which roles may see it."""

    __tablename__ = "resident_tag"
    id: int | None = Field(default=None, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True)
    tag: str = Field(max_length=40, description="elderly_alone, disability, care, special_attention …")
    reason: str = Field(max_length=500)
    visible_to: str = Field(default="admin,manager,grid_worker", max_length=100,
                            description="Comma-separated roles that may see the tag.")
    created_by: str = Field(default="", max_length=80)
    created_at: datetime = created_at_field()


class Vehicle(SQLModel, table=True):
    """A registered vehicle (车辆) of a household, with its parking permit."""

    __tablename__ = "vehicle"
    id: int | None = Field(default=None, primary_key=True)
    plate: str = Field(max_length=16, unique=True, index=True, description="Stored whole, masked wherever shown.")
    household_id: int = Field(foreign_key="household.id", index=True)
    permit: str = Field(default="", max_length=40, description="Parking permit number, empty for none.")
    permit_until: date | None = Field(default=None)
    created_at: datetime = created_at_field()


class DutyShift(SQLModel, table=True):
    """One staff member on duty from `starts_at` to `ends_at` (the duty roster, 值班表)."""

    __tablename__ = "duty_shift"
    id: int | None = Field(default=None, primary_key=True)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    team: str = Field(max_length=50, index=True)
    starts_at: datetime = created_at_field(index=True)
    ends_at: datetime = created_at_field(index=True)


class Role(StrEnum):
    """Dashboard roles, most to least powerful."""

    admin = "admin"
    manager = "manager"
    staff = "staff"
    grid_worker = "grid_worker"
    viewer = "viewer"


class UserAccount(SQLModel, table=True):
    """A dashboard login: a scrypt password hash (never the password), a role, and the staff member it is."""

    __tablename__ = "user_account"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=50, unique=True, index=True)
    password_hash: str = Field(max_length=200)
    role: Role = enum_field(Role)
    staff_id: int | None = Field(default=None, foreign_key="staff.id")
    failed_logins: int = Field(default=0)
    last_failed_at: datetime | None = timestamp_field()
    created_at: datetime = created_at_field()


class LoginSession(SQLModel, table=True):
    """A signed-in session; only the SHA-256 of its token is kept."""

    __tablename__ = "login_session"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    created_at: datetime = created_at_field()
    expires_at: datetime = created_at_field()


class AuditEntry(SQLModel, table=True):
    """Who did what to which record, when and why: every reveal, export, change and review."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = created_at_field(index=True)
    actor: str = Field(max_length=80, index=True)
    action: str = Field(max_length=40, index=True, description="reveal, export, change, review, import, purge …")
    entity: str = Field(max_length=40)
    entity_id: str = Field(default="", max_length=40)
    detail: str = Field(default="", max_length=1000, description="Field names or counts — never the values.")
    reason: str = Field(default="", max_length=500)


class ChangeStatus(StrEnum):
    """A collected change: pending review, applied, or rejected."""

    pending = "pending"
    applied = "applied"
    rejected = "rejected"


class RecordChange(SQLModel, table=True):
    """A change a grid worker made on the collection page (一次采集，多方使用), optionally reviewed first."""

    __tablename__ = "record_change"
    id: int | None = Field(default=None, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True)
    changes: str = Field(max_length=2000, description="JSON object of field → new value.")
    by: str = Field(max_length=80)
    status: ChangeStatus = enum_field(ChangeStatus, ChangeStatus.pending, index=True)
    reviewed_by: str = Field(default="", max_length=80)
    created_at: datetime = created_at_field()
    decided_at: datetime | None = timestamp_field()


class Announcement(SQLModel, table=True):
    """A community notice (社区公告) to a community, a building or a group."""

    __tablename__ = "announcement"
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=100)
    body: str = Field(max_length=2000)
    community_id: int = Field(foreign_key="community.id", index=True)
    building_id: int | None = Field(default=None, foreign_key="building.id")
    audience: str = Field(default="all", max_length=30, description="all, living_alone, vehicle_owners.")
    broadcast: bool = Field(default=False, description="Also read out on the loudspeakers (cloud broadcast).")
    by: str = Field(max_length=80)
    created_at: datetime = created_at_field(index=True)


class AnnouncementDelivery(SQLModel, table=True):
    """One resident's copy of an announcement, with its notification's outcome."""

    __tablename__ = "announcement_delivery"
    id: int | None = Field(default=None, primary_key=True)
    announcement_id: int = Field(foreign_key="announcement.id", index=True)
    resident_id: int = Field(foreign_key="resident.id", index=True)
    notification_id: int | None = Field(default=None, foreign_key="notification.id")
    status: str = Field(default="pending", max_length=20)


class PatrolRoute(SQLModel, table=True):
    """A patrol route (巡更路线) walked once a day, reported to its security lead."""

    __tablename__ = "patrol_route"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(max_length=100)
    community_id: int = Field(foreign_key="community.id", index=True)
    lead_staff_id: int | None = Field(default=None, foreign_key="staff.id")


class PatrolCheckpoint(SQLModel, table=True):
    """One stop of a route, in order, to be scanned between two local times of day."""

    __tablename__ = "patrol_checkpoint"
    id: int | None = Field(default=None, primary_key=True)
    route_id: int = Field(foreign_key="patrol_route.id", index=True)
    seq: int = Field(ge=1)
    code: str = Field(max_length=32, unique=True, index=True, description="What the checkpoint's tag reads.")
    name: str = Field(max_length=100)
    window_start: str = Field(max_length=5, description="Local time HH:MM the scan is due from.")
    window_end: str = Field(max_length=5, description="Local time HH:MM after which it is late.")
    grace_minutes: int = Field(default=30, ge=0, description="Late scans within this count as late, after: missed.")


class PatrolScan(SQLModel, table=True):
    """A checkpoint scanned by a guard (from a device event or the API)."""

    __tablename__ = "patrol_scan"
    id: int | None = Field(default=None, primary_key=True)
    checkpoint_id: int = Field(foreign_key="patrol_checkpoint.id", index=True)
    at: datetime = created_at_field(index=True)
    by: str = Field(max_length=80)
    source: str = Field(default="api", max_length=20)


class PatrolIssue(SQLModel, table=True):
    """A missed or late checkpoint on a local day, alerted once."""

    __tablename__ = "patrol_issue"
    __table_args__ = (UniqueConstraint("checkpoint_id", "day"),)
    id: int | None = Field(default=None, primary_key=True)
    checkpoint_id: int = Field(foreign_key="patrol_checkpoint.id", index=True)
    day: date
    kind: str = Field(max_length=10, description="missed or late.")
    alerted_at: datetime = created_at_field()


class FamilyContact(SQLModel, table=True):
    """A resident's family member to tell about welfare checks (notification target 'family:ID')."""

    __tablename__ = "family_contact"
    id: int | None = Field(default=None, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True)
    name: str = Field(max_length=50)
    relation: str = Field(default="", max_length=20)
    contact_url: str = Field(default="", max_length=500, description="Apprise URL (SMS, voice, WeChat …).")


class WelfareCheck(SQLModel, table=True):
    """A welfare-check case opened by the elderly-care watch for a silent resident living alone."""

    __tablename__ = "welfare_check"
    id: int | None = Field(default=None, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True)
    case_id: int = Field(foreign_key="case.id")
    last_activity_at: datetime = created_at_field()
    opened_at: datetime = created_at_field(index=True)


class CredentialStatus(StrEnum):
    """An access credential is active or voided (unused too long, lost, withdrawn)."""

    active = "active"
    void = "void"


class AccessCredential(SQLModel, table=True):
    """One way a resident opens the gates: the method and the credential's reference — never an image or template.

    The face itself stays on the gate vendor's device; Linli keeps only the reference the gate
    reports (e.g. its enrolment id), like a card number or a QR token.
    """

    __tablename__ = "access_credential"
    __table_args__ = (UniqueConstraint("method", "reference"),)
    id: int | None = Field(default=None, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True)
    method: str = Field(max_length=20, description="face, card, qr, id_card, fingerprint, app.")
    reference: str = Field(max_length=64, description="What the gate reports: card number, enrolment id, token.")
    status: CredentialStatus = enum_field(CredentialStatus, CredentialStatus.active, index=True)
    enrolled_at: datetime = created_at_field()
    voided_at: datetime | None = timestamp_field()
    void_reason: str = Field(default="", max_length=200)


class AccessNotice(SQLModel, table=True):
    """A notice sent about a resident's access (face fallback, face voided), so it is not repeated."""

    __tablename__ = "access_notice"
    id: int | None = Field(default=None, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True)
    kind: str = Field(max_length=20, description="face_fallback or face_voided.")
    device_id: int | None = Field(default=None, foreign_key="device.id")
    at: datetime = created_at_field(index=True)
