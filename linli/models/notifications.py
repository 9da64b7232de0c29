"""Every notification Linli sends, recorded with its delivery status (an outbox)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from linli.models.base import created_at_field, enum_field, timestamp_field


class NotificationStatus(StrEnum):
    """pending → sent | failed; 'recorded' when no channel is configured for the target."""

    pending = "pending"
    sent = "sent"
    failed = "failed"
    recorded = "recorded"


class Notification(SQLModel, table=True):
    """One message to one target, rendered from a template."""

    __tablename__ = "notification"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    kind: str = Field(max_length=40, description="receipt, assignment, rating_request, escalation …")
    target: str = Field(max_length=80, description="'staff:3', 'resident:7' …")
    channel: str = Field(default="apprise", max_length=20)
    template: str = Field(max_length=100)
    language: str = Field(max_length=5)
    title: str = Field(max_length=200)
    body: str = Field(max_length=4000)
    status: NotificationStatus = enum_field(NotificationStatus, NotificationStatus.pending, index=True)
    error: str = Field(default="", max_length=1000)
    attempts: int = Field(default=0)
    created_at: datetime = created_at_field()
    sent_at: datetime | None = timestamp_field()
