"""The device inventory: register devices one by one or from a CSV file, all rows or none."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from linli.devices.registry import DEVICE_TYPES
from linli.errors import ValidationError
from linli.models import Building, Community, Device, DeviceState

CSV_COLUMNS = ("code", "device_type", "community", "building", "floor", "name", "heartbeat_seconds", "firmware")
REQUIRED_COLUMNS = ("code", "device_type")


class DeviceIn(BaseModel):
    """One device to register (a CSV row or an API call)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$", description="Device id used in MQTT topics.")
    device_type: str = Field(description="One of the registry's device types.")
    community: str | None = Field(default=None, description="Community code; taken from the building if empty.")
    building: str | None = Field(default=None, description="Building code, e.g. XFL-B1.")
    floor: int | None = Field(default=None, ge=-10, le=200)
    name: str = Field(default="", max_length=100)
    heartbeat_seconds: int | None = Field(default=None, ge=5, le=86400)
    firmware: str = Field(default="", max_length=40)


@dataclass(frozen=True)
class RowError:
    """What is wrong with one CSV row (line numbers count the header as line 1)."""

    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


def _resolve(session: Session, item: DeviceIn) -> Device:
    if item.device_type not in DEVICE_TYPES:
        raise ValueError(f"unknown device_type {item.device_type!r} (use one of {', '.join(DEVICE_TYPES)})")
    building = None
    if item.building:
        building = session.exec(select(Building).where(Building.code == item.building)).first()
        if building is None:
            raise ValueError(f"unknown building {item.building!r}")
    community = None
    if item.community:
        community = session.exec(select(Community).where(Community.code == item.community)).first()
        if community is None:
            raise ValueError(f"unknown community {item.community!r}")
    if building is not None:
        if community is not None and community.id != building.community_id:
            raise ValueError(f"building {item.building} is not in community {item.community}")
        community = session.get(Community, building.community_id)
    if community is None:
        raise ValueError("give a building or a community")
    spec = DEVICE_TYPES[item.device_type]
    return Device(code=item.code, device_type=item.device_type, name=item.name or f"{spec.name_zh} {item.code}",
                  community_id=community.id, building_id=building.id if building else None,
                  grid_id=building.grid_id if building else None, floor=item.floor,
                  heartbeat_seconds=item.heartbeat_seconds or spec.heartbeat_seconds, firmware=item.firmware,
                  state=DeviceState.offline)


def add_device(session: Session, item: DeviceIn) -> Device:
    """Register one device (the caller commits); ValidationError when it cannot be."""
    if session.exec(select(Device.id).where(Device.code == item.code)).first() is not None:
        raise ValidationError(f"device {item.code} already exists", field="code", hint="device codes are unique")
    try:
        device = _resolve(session, item)
    except ValueError as err:
        raise ValidationError(f"device {item.code}: {err}", field="device") from err
    session.add(device)
    session.flush()
    return device


def import_csv(session: Session, text: str) -> list[Device]:
    """Register every device of a CSV file, or none: every bad row is reported, with its line, at once.

    Columns: code, device_type (required), community, building, floor, name, heartbeat_seconds,
    firmware. The caller commits.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if missing or unknown:
        raise ValidationError(
            f"bad CSV header: missing {', '.join(missing) or '-'}; unknown {', '.join(unknown) or '-'}",
            field="header", hint=f"use the columns {', '.join(CSV_COLUMNS)} (code and device_type required)")
    errors: list[RowError] = []
    devices: list[Device] = []
    codes: dict[str, int] = {}
    existing = set(session.exec(select(Device.code)).all())
    for line, raw in enumerate(reader, start=2):
        values = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        values = {k: v for k, v in values.items() if v != ""}
        try:
            item = DeviceIn.model_validate(values)
        except pydantic.ValidationError as err:
            errors.append(RowError(line, "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                                   for e in err.errors())))
            continue
        if item.code in existing:
            errors.append(RowError(line, f"device {item.code} already exists"))
            continue
        if item.code in codes:
            errors.append(RowError(line, f"device {item.code} is also on line {codes[item.code]}"))
            continue
        codes[item.code] = line
        try:
            devices.append(_resolve(session, item))
        except ValueError as err:
            errors.append(RowError(line, str(err)))
    if errors:
        shown = "\n".join(str(e) for e in errors[:50])
        more = f"\n… and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise ValidationError(f"{len(errors)} bad row(s), nothing imported:\n{shown}{more}", field="csv",
                              hint="fix these rows and import the file again")
    if not devices:
        raise ValidationError("the CSV file has no rows", field="csv", hint="one device per line after the header")
    session.add_all(devices)
    session.flush()
    return devices
