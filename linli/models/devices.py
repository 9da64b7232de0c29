"""Devices and what they send: telemetry, events, access and vehicle records, alarms, commands,
dead letters, and the data-hub outbox with its per-endpoint cursors."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from linli.models.base import created_at_field, enum_field, timestamp_field


class DeviceState(StrEnum):
    """online (heard from recently) / offline (silent > 2× heartbeat) / maintenance (taken out by staff)."""

    online = "online"
    offline = "offline"
    maintenance = "maintenance"


class Device(SQLModel, table=True):
    """One device in a community, addressed on MQTT by its `code`."""

    __tablename__ = "device"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, index=True, description="Device id used in MQTT topics.")
    device_type: str = Field(max_length=32, index=True, description="A type from linli.devices.registry.")
    name: str = Field(default="", max_length=100)
    community_id: int = Field(foreign_key="community.id", index=True)
    building_id: int | None = Field(default=None, foreign_key="building.id", index=True)
    grid_id: int | None = Field(default=None, foreign_key="grid.id", index=True)
    floor: int | None = Field(default=None, description="Floor in the building (negative: underground).")
    heartbeat_seconds: int = Field(default=60, ge=5, description="How often the device says it is alive.")
    battery: int | None = Field(default=None, ge=0, le=100, description="Battery percent, last reported.")
    firmware: str = Field(default="", max_length=40)
    state: DeviceState = enum_field(DeviceState, DeviceState.offline, index=True)
    last_seen: datetime | None = timestamp_field(index=True)
    created_at: datetime = created_at_field()


class Telemetry(SQLModel, table=True):
    """One telemetry message: its metrics as JSON; unique per device, message key and time (idempotent).

    The four message tables are partitioned by month of `ts` on PostgreSQL (migration 0008), and a
    partitioned table's unique keys must hold the partition key: so `ts` is part of the key. A
    redelivered message carries the same key and time, so it is still written once."""

    __tablename__ = "telemetry"
    __table_args__ = (UniqueConstraint("device_id", "msg_key", "ts", name="uq_telemetry_device_msg"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id")
    msg_key: str = Field(max_length=64, description="The message id, or its timestamp when it has none.")
    ts: datetime = created_at_field(index=True)
    received_at: datetime = created_at_field()
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class DeviceEvent(SQLModel, table=True):
    """One event message (alarm button pressed, smoke detected, object thrown …)."""

    __tablename__ = "device_event"
    __table_args__ = (UniqueConstraint("device_id", "msg_key", "ts", name="uq_device_event_device_msg"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", index=True)
    msg_key: str = Field(max_length=64)
    ts: datetime = created_at_field(index=True)
    received_at: datetime = created_at_field()
    event: str = Field(max_length=40, index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    snapshot_key: str = Field(default="", max_length=300, description="Object-store key of a snapshot.")


class AccessRecord(SQLModel, table=True):
    """A pass through an access gate: method and a credential reference — never a face image or template."""

    __tablename__ = "access_record"
    __table_args__ = (UniqueConstraint("device_id", "msg_key", "ts", name="uq_access_record_device_msg"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", index=True)
    msg_key: str = Field(max_length=64)
    ts: datetime = created_at_field(index=True)
    method: str = Field(max_length=20, description="face, card, qr, id_card, fingerprint, app.")
    credential_ref: str = Field(max_length=64, description="Card number, QR token, ID number or app user ref.")
    direction: str = Field(default="in", max_length=3)
    granted: bool = Field(default=True)
    resident_id: int | None = Field(default=None, foreign_key="resident.id")


class VehicleRecord(SQLModel, table=True):
    """A vehicle passing a barrier: plate, direction and gate (the device)."""

    __tablename__ = "vehicle_record"
    __table_args__ = (UniqueConstraint("device_id", "msg_key", "ts", name="uq_vehicle_record_device_msg"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", index=True)
    msg_key: str = Field(max_length=64)
    ts: datetime = created_at_field(index=True)
    plate: str = Field(max_length=16, description="Stored whole for the authorities; masked wherever shown.")
    direction: str = Field(default="in", max_length=3)
    granted: bool = Field(default=True)


class TelemetryHourly(SQLModel, table=True):
    """One device's one metric over one closed hour (UTC): what dashboards read, kept after raw rows go."""

    __tablename__ = "telemetry_hourly"
    __table_args__ = (UniqueConstraint("device_id", "metric", "hour", name="uq_telemetry_hourly"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id")
    metric: str = Field(max_length=40)
    hour: datetime = created_at_field(index=True)
    count: int = Field(ge=1, description="Readings of the metric in the hour.")
    min: float
    max: float
    avg: float
    last: float = Field(description="The hour's latest reading.")
    last_ts: datetime = created_at_field()


class DeadLetter(SQLModel, table=True):
    """A message ingest could not accept, with its raw bytes and why."""

    __tablename__ = "dead_letter"
    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = created_at_field(index=True)
    topic: str = Field(max_length=300)
    reason: str = Field(max_length=20, index=True, description="bad_topic, oversized, bad_json, schema, "
                        "unknown_device, wrong_type.")
    detail: str = Field(default="", max_length=1000)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AlarmSeverity(StrEnum):
    """How bad an alarm is."""

    critical = "critical"
    major = "major"
    minor = "minor"
    warning = "warning"


class AlarmStatus(StrEnum):
    """active (unacknowledged) → acknowledged → cleared."""

    active = "active"
    acknowledged = "acknowledged"
    cleared = "cleared"


class Alarm(SQLModel, table=True):
    """One alarm of one type on one device; a repeat while it is open updates it (count, last_at)."""

    __tablename__ = "alarm"
    # At most one open (not cleared) alarm per device and type, also across ingest replicas.
    __table_args__ = (
        Index("uq_alarm_open", "device_id", "alarm_type", unique=True,
              postgresql_where=text("status <> 'cleared'"), sqlite_where=text("status <> 'cleared'")),
    )
    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", index=True)
    alarm_type: str = Field(max_length=40)
    severity: AlarmSeverity = enum_field(AlarmSeverity, AlarmSeverity.major)
    life_safety: bool = Field(default=False)
    status: AlarmStatus = enum_field(AlarmStatus, AlarmStatus.active, index=True)
    message: str = Field(default="", max_length=500)
    value: float | None = None
    count: int = Field(default=1, ge=1)
    first_at: datetime = created_at_field()
    last_at: datetime = created_at_field(index=True)
    acknowledged_by: str = Field(default="", max_length=80)
    acknowledged_at: datetime | None = timestamp_field()
    cleared_by: str = Field(default="", max_length=80)
    cleared_at: datetime | None = timestamp_field()
    case_id: int | None = Field(default=None, foreign_key="case.id")
    snapshot_key: str = Field(default="", max_length=300)
    notified_at: datetime | None = timestamp_field()


class CommandStatus(StrEnum):
    """sent → acked | failed | timeout."""

    sent = "sent"
    acked = "acked"
    failed = "failed"
    timeout = "timeout"


class DeviceCommand(SQLModel, table=True):
    """A downlink command sent on `cmd`, tracked until its `cmd_ack` or a timeout."""

    __tablename__ = "device_command"
    id: int | None = Field(default=None, primary_key=True)
    cmd_id: str = Field(max_length=40, unique=True, index=True)
    device_id: int = Field(foreign_key="device.id", index=True)
    command: str = Field(max_length=30)
    args: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: CommandStatus = enum_field(CommandStatus, CommandStatus.sent, index=True)
    requested_by: str = Field(default="system", max_length=80)
    sent_at: datetime = created_at_field()
    timeout_at: datetime = created_at_field()
    answered_at: datetime | None = timestamp_field()
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class OutboxRecord(SQLModel, table=True):
    """A record to push to the data hub, written in the same transaction as the record itself."""

    __tablename__ = "datahub_outbox"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20, index=True, description="access, vehicle, alarm …")
    record_id: int
    idempotency_key: str = Field(max_length=120, unique=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = created_at_field()


class EndpointCursor(SQLModel, table=True):
    """How far one data-hub endpoint has got through the outbox, and how it is doing."""

    __tablename__ = "datahub_cursor"
    id: int | None = Field(default=None, primary_key=True)
    endpoint: str = Field(max_length=80, unique=True)
    last_id: int = Field(default=0, description="Highest outbox id delivered or parked.")
    delivered: int = Field(default=0)
    parked: int = Field(default=0)
    failures: int = Field(default=0, description="Consecutive failed attempts of the current batch.")
    status: str = Field(default="ok", max_length=20, description="ok, retrying, parked.")
    last_error: str = Field(default="", max_length=1000)
    next_attempt_at: datetime | None = timestamp_field()
    updated_at: datetime = created_at_field()


class ParkedRecord(SQLModel, table=True):
    """An outbox record an endpoint refused N times: parked for staff to look at and replay."""

    __tablename__ = "datahub_parked"
    __table_args__ = (UniqueConstraint("endpoint", "outbox_id", name="uq_datahub_parked"),)
    id: int | None = Field(default=None, primary_key=True)
    endpoint: str = Field(max_length=80, index=True)
    outbox_id: int = Field(foreign_key="datahub_outbox.id")
    attempts: int
    error: str = Field(default="", max_length=1000)
    parked_at: datetime = created_at_field()
