"""The MQTT protocol, in one place: topic scheme and JSON payloads validated per device type.

Topics::

    linli/{community}/{device_type}/{device_id}/{kind}     kind: telemetry | event | heartbeat | cmd | cmd_ack

Payloads are JSON objects. Every uplink carries ``ts`` (epoch seconds or ISO 8601 with a zone) and
may carry ``id`` (the device's message id); a message is idempotent on device + ``id`` (or ``ts``
when there is no id), so a redelivery never writes twice::

    telemetry  {"id": "m1", "ts": 1764000000.5, "metrics": {"gas_lel": 3.5}}
    heartbeat  {"ts": ..., "battery": 87, "firmware": "1.4.2", "rssi": -67}
    event      {"ts": ..., "event": "sos"}
               {"ts": ..., "event": "access", "method": "card", "credential_ref": "C-0042", "direction": "in"}
               {"ts": ..., "event": "vehicle", "plate": "皖A12345", "direction": "out"}
               {"ts": ..., "event": "object_thrown", "snapshot": "<base64 JPEG>"}
    cmd_ack    {"ts": ..., "cmd_id": "…", "ok": true, "detail": "", "state": {...}}
    cmd        {"cmd_id": "…", "command": "broadcast", "args": {"text": "…"}, "ts": ...}   (downlink)

Extra fields are refused: that is also how a face image or biometric template is kept out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any, Literal

import pydantic
from pydantic import AwareDatetime, Base64Bytes, BaseModel, ConfigDict, Field, create_model, model_validator

from linli.devices.registry import DEVICE_TYPES, AccessMethod, DeviceTypeSpec
from linli.errors import ValidationError

ROOT = "linli"
MAX_PAYLOAD_BYTES = 256 * 1024  # a snapshot of a few hundred kB fits; anything larger is refused
ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"


class Kind(StrEnum):
    """The last level of a topic."""

    telemetry = "telemetry"
    event = "event"
    heartbeat = "heartbeat"
    cmd = "cmd"
    cmd_ack = "cmd_ack"


UPLINK = (Kind.telemetry, Kind.event, Kind.heartbeat, Kind.cmd_ack)


@dataclass(frozen=True)
class Topic:
    """A parsed topic."""

    community: str
    device_type: str
    device_id: str
    kind: Kind

    def __str__(self) -> str:
        return topic(self.community, self.device_type, self.device_id, self.kind)


def topic(community: str, device_type: str, device_id: str, kind: Kind | str) -> str:
    """The topic a device of `device_type` publishes `kind` on (or receives `cmd` on)."""
    return f"{ROOT}/{community}/{device_type}/{device_id}/{Kind(kind).value}"


def subscription(shared_group: str = "") -> str:
    """The filter ingest subscribes to: every uplink of every device; MQTT 5 shared when a group is given."""
    pattern = f"{ROOT}/+/+/+/+"
    return f"$share/{shared_group}/{pattern}" if shared_group else pattern


class Rejected(Exception):
    """A message ingest refuses: `reason` is one of the dead-letter reasons, `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_topic(name: str) -> Topic:
    """Split a topic into its parts; Rejected('bad_topic') when it does not follow the scheme."""
    parts = name.split("/")
    if len(parts) != 5 or parts[0] != ROOT or not all(parts):
        raise Rejected("bad_topic", f"topic {name!r} is not linli/{{community}}/{{type}}/{{device}}/{{kind}}")
    _, community, device_type, device_id, kind = parts
    if device_type not in DEVICE_TYPES:
        raise Rejected("bad_topic", f"unknown device type {device_type!r} in topic")
    try:
        parsed_kind = Kind(kind)
    except ValueError:
        raise Rejected("bad_topic", f"unknown message kind {kind!r}; use one of {', '.join(Kind)}") from None
    return Topic(community, device_type, device_id, parsed_kind)


# --- payload models ---------------------------------------------------------------------------


class Uplink(BaseModel):
    """What every uplink payload carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(default=None, pattern=ID_PATTERN, description="The device's message id.")
    ts: AwareDatetime = Field(description="When the device produced the message.")

    @property
    def msg_key(self) -> str:
        """Idempotency key within one device: the message id, else the timestamp to the microsecond."""
        return self.id or f"ts:{self.ts.timestamp():.6f}"


class Heartbeat(Uplink):
    """I am alive: battery, firmware, signal."""

    battery: int | None = Field(default=None, ge=0, le=100)
    firmware: str | None = Field(default=None, max_length=40)
    rssi: int | None = Field(default=None, ge=-150, le=0)


class CommandAck(Uplink):
    """The answer to a downlink command."""

    cmd_id: str = Field(pattern=ID_PATTERN)
    ok: bool
    detail: str = Field(default="", max_length=500)
    state: dict[str, Any] = Field(default_factory=dict)


class Command(BaseModel):
    """A downlink command published on `cmd`."""

    model_config = ConfigDict(extra="forbid")

    cmd_id: str = Field(pattern=ID_PATTERN)
    command: str
    args: dict[str, Any] = Field(default_factory=dict)
    ts: AwareDatetime


class EventBase(Uplink):
    """An event; subclasses per device type narrow `event` and add their fields."""

    event: str
    detail: str = Field(default="", max_length=500)


class AccessFields(EventBase):
    """An access gate's event; an 'access' event is an access record (method + credential reference only)."""

    method: AccessMethod | None = None
    credential_ref: str | None = Field(default=None, min_length=1, max_length=64)
    direction: Literal["in", "out"] = "in"
    granted: bool = True

    @model_validator(mode="after")
    def _record_complete(self) -> AccessFields:
        if self.event == "access" and (self.method is None or self.credential_ref is None):
            raise ValueError("an access event needs method and credential_ref")
        return self


class VehicleFields(EventBase):
    """A vehicle barrier's event; a 'vehicle' event is a vehicle record."""

    plate: str | None = Field(default=None, min_length=2, max_length=16)
    direction: Literal["in", "out"] = "in"
    granted: bool = True

    @model_validator(mode="after")
    def _record_complete(self) -> VehicleFields:
        if self.event == "vehicle" and self.plate is None:
            raise ValueError("a vehicle event needs plate")
        return self


class SnapshotFields(EventBase):
    """An event that may carry a snapshot image (base64)."""

    snapshot: Base64Bytes | None = None
    content_type: Literal["image/jpeg", "image/png"] = "image/jpeg"


class TelemetryBase(Uplink):
    """Telemetry: `metrics` holds the type's metrics (at least one)."""

    metrics: Any


def _metrics_model(spec: DeviceTypeSpec) -> type[BaseModel]:
    fields: dict[str, Any] = {
        m.name: (float | None, Field(default=None, ge=m.low, le=m.high, description=f"{m.name} in {m.unit}"))
        for m in spec.metrics
    }
    model = create_model(f"{spec.code}_metrics", __config__=ConfigDict(extra="forbid", frozen=True), **fields)
    return model


@cache
def payload_model(device_type: str, kind: Kind) -> type[Uplink]:
    """The pydantic model of `kind` payloads for `device_type` (built once from the registry)."""
    spec = DEVICE_TYPES[device_type]
    if kind is Kind.heartbeat:
        return Heartbeat
    if kind is Kind.cmd_ack:
        return CommandAck
    if kind is Kind.telemetry:
        metrics = _metrics_model(spec)
        return create_model(f"{spec.code}_telemetry", __base__=TelemetryBase, metrics=(metrics, ...))
    if kind is Kind.event:
        base: type[EventBase] = {"access": AccessFields, "vehicle": VehicleFields}.get(spec.record, EventBase)
        if spec.snapshot:
            base = SnapshotFields
        allowed = tuple(spec.events) + ((spec.record,) if spec.record else ())
        return create_model(f"{spec.code}_event", __base__=base, event=(Literal[allowed], ...))  # type: ignore[valid-type]
    raise Rejected("bad_topic", f"devices do not publish on {kind.value}")


def _problems(err: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in err.errors())[:900]


def pg_text(value: str) -> str:
    """`value` storable in a PostgreSQL text column: NUL (which PostgreSQL refuses) becomes U+FFFD."""
    return value.replace("\x00", "\ufffd")


def parse_payload(parsed_topic: Topic, raw: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Uplink:
    """Validate a raw payload for its topic; Rejected with reason oversized, bad_json or schema."""
    if len(raw) > max_bytes:
        raise Rejected("oversized", f"payload of {len(raw)} bytes is over the {max_bytes}-byte limit")
    if b"\\u0000" in raw:  # PostgreSQL's text and jsonb cannot hold NUL: the row would fail the whole batch
        raise Rejected("schema", "a string holds NUL (\\u0000); devices must not send NUL characters")
    model = payload_model(parsed_topic.device_type, parsed_topic.kind)
    try:
        payload = model.model_validate_json(raw)
    except pydantic.ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            raise Rejected("bad_json", f"not JSON: {err.errors()[0]['msg']}") from None
        if any(e["type"] == "model_type" and not e["loc"] for e in err.errors()):
            raise Rejected("bad_json", "payload is JSON but not an object") from None
        raise Rejected("schema", _problems(err)) from None
    if isinstance(payload, TelemetryBase) and not metrics_of(payload):
        raise Rejected("schema", "metrics: give at least one metric")
    return payload


def metrics_of(payload: TelemetryBase) -> dict[str, float]:
    """The metrics a telemetry payload reported (absent ones left out)."""
    return {name: value for name, value in payload.metrics.__dict__.items() if value is not None}


def command_payload(cmd_id: str, command: str, args: dict[str, Any], ts: datetime) -> bytes:
    """The JSON bytes of a downlink command."""
    Command(cmd_id=cmd_id, command=command, args=args, ts=ts)
    return json.dumps({"cmd_id": cmd_id, "command": command, "args": args, "ts": ts.timestamp()},
                      ensure_ascii=False).encode()


def check_command(spec: DeviceTypeSpec, command: str, args: dict[str, Any]) -> None:
    """Refuse a command the device type does not take, or a broadcast without text."""
    if command not in spec.commands:
        raise ValidationError(f"{spec.code} devices do not take the command {command!r}", field="command",
                              hint=f"use one of: {', '.join(spec.commands)}")
    if command == "broadcast" and not str(args.get("text", "")).strip():
        raise ValidationError("a broadcast needs the text to speak", field="text", hint="give --text '…'")
