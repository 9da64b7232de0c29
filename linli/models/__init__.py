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
