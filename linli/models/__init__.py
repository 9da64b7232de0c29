"""Linli's tables. Importing this package registers every table on SQLModel.metadata."""

from linli.models.base import UTCDateTime, utcnow
from linli.models.cases import (
    Assignment,
    Case,
    CaseEvent,
    CasePhoto,
    CaseSource,
    CaseStatus,
    Category,
    Feedback,
    PhotoKind,
)
from linli.models.governance import ApiKey, CaseRouting, NotifyRoute, VolunteerClaim
from linli.models.notifications import Notification, NotificationStatus
from linli.models.people import Resident, ResidentKind, Staff, StaffRole, Volunteer
from linli.models.places import Building, Community, Grid, StreetOffice

__all__ = [
    "Assignment", "Building", "Case", "CaseEvent", "CasePhoto", "CaseSource", "CaseStatus", "Category",
    "Community", "Feedback", "Grid", "Notification", "NotificationStatus", "PhotoKind", "Resident",
    "ResidentKind", "Staff", "StaffRole", "StreetOffice", "UTCDateTime", "Volunteer", "utcnow",
    "ApiKey", "CaseRouting", "NotifyRoute", "VolunteerClaim",
]
from linli.models.registry import (  # noqa: E402  (the registry issue's tables)
    AccessCredential,
    AccessNotice,
    Announcement,
    AnnouncementDelivery,
    AuditEntry,
    ChangeStatus,
    CredentialStatus,
    DutyShift,
    FamilyContact,
    Household,
    LoginSession,
    PatrolCheckpoint,
    PatrolIssue,
    PatrolRoute,
    PatrolScan,
    RecordChange,
    ResidentDetail,
    ResidentTag,
    Role,
    Unit,
    UserAccount,
    Vehicle,
    WelfareCheck,
)

__all__ += [
    "Announcement", "AnnouncementDelivery", "AuditEntry", "ChangeStatus", "DutyShift", "Household", "LoginSession",
    "PatrolCheckpoint", "PatrolIssue", "PatrolRoute", "PatrolScan", "RecordChange", "ResidentDetail",
    "ResidentTag", "Role", "Unit", "UserAccount", "Vehicle", "AccessCredential", "AccessNotice", "CredentialStatus",
    "FamilyContact", "WelfareCheck",
]
from linli.models.devices import (  # noqa: E402  (appended by the devices issue)
    AccessRecord,
    Alarm,
    AlarmSeverity,
    AlarmStatus,
    CommandStatus,
    DeadLetter,
    Device,
    DeviceCommand,
    DeviceEvent,
    DeviceState,
    EndpointCursor,
    OutboxRecord,
    ParkedRecord,
    Telemetry,
    VehicleRecord,
)

__all__ += [
    "AccessRecord", "Alarm", "AlarmSeverity", "AlarmStatus", "CommandStatus", "DeadLetter", "Device",
    "DeviceCommand", "DeviceEvent", "DeviceState", "EndpointCursor", "OutboxRecord", "ParkedRecord", "Telemetry",
    "VehicleRecord",
]
from linli.models.devices import TelemetryHourly  # noqa: E402  (appended by the scale issue)

__all__ += ["TelemetryHourly"]
from linli.models.runtime import FlowRunClaim  # noqa: E402  (the warm workers' claims)

__all__ += ["FlowRunClaim"]
