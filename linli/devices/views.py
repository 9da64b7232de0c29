"""What the dashboard shows about devices, alarms, records and the data hub — personal fields masked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from linli.devices.registry import DEVICE_TYPES, alarm_name
from linli.models import (
    AccessRecord,
    Alarm,
    AlarmStatus,
    Building,
    Community,
    Device,
    DeviceState,
    VehicleRecord,
)
from linli.privacy import mask_id_number, mask_phone, mask_plate


@dataclass(frozen=True)
class DeviceRow:
    """One device as listed."""

    id: int
    code: str
    type_zh: str
    type_en: str
    community: str
    building: str
    floor: int | None
    state: str
    battery: int | None
    last_seen: datetime | None
    device_type: str = ""


def device_rows(*, session: Session, state: str | None = None, community_id: int | None = None,
                limit: int = 2000) -> list[DeviceRow]:
    """Devices with their place, newest-heard first."""
    query = (select(Device, Community.name, Building.name).join(Community, Community.id == Device.community_id)
             .join(Building, Building.id == Device.building_id, isouter=True))
    if state:
        query = query.where(Device.state == state)
    if community_id is not None:
        query = query.where(Device.community_id == community_id)
    query = query.order_by(col(Device.last_seen).desc().nulls_last(), Device.code).limit(limit)
    rows = []
    for device, community, building in session.exec(query).all():
        spec = DEVICE_TYPES.get(device.device_type)
        rows.append(DeviceRow(device.id or 0, device.code, spec.name_zh if spec else device.device_type,
                              spec.name_en if spec else device.device_type, community, building or "",
                              device.floor, str(device.state), device.battery, device.last_seen,
                              device.device_type))
    return rows


def state_counts(*, session: Session) -> dict[str, int]:
    """How many devices are online, offline, in maintenance."""
    counts = dict(session.exec(select(Device.state, func.count()).group_by(Device.state)).all())
    return {state.value: int(counts.get(state, 0)) for state in DeviceState}


def building_view(*, session: Session) -> list[dict[str, Any]]:
    """Per building: devices online / offline / maintenance, and open alarms."""
    by_state = session.exec(select(Device.building_id, Device.state, func.count())
                            .group_by(Device.building_id, Device.state)).all()
    alarms = dict(session.exec(select(Device.building_id, func.count()).join(Alarm, Alarm.device_id == Device.id)
                               .where(Alarm.status != AlarmStatus.cleared).group_by(Device.building_id)).all())
    communities = dict(session.exec(select(Community.id, Community.name)).all())
    # Buildings are named within their community ("3栋"): the view shows the community too.
    names = {b.id: (f"{communities.get(b.community_id, '')} {b.name}".strip(), b.code, b.lat, b.lon)
             for b in session.exec(select(Building)).all()}
    table: dict[int | None, dict[str, Any]] = {}
    for building_id, state, count in by_state:
        name, code, lat, lon = names.get(building_id, ("—", "", None, None))
        row = table.setdefault(building_id, {"building": name, "code": code, "lat": lat, "lon": lon,
                                             "online": 0, "offline": 0, "maintenance": 0,
                                             "alarms": int(alarms.get(building_id, 0))})
        row[str(state)] = int(count)
    return sorted(table.values(), key=lambda r: r["code"])


@dataclass(frozen=True)
class AlarmRow:
    """One open alarm as listed."""

    id: int
    name: str
    severity: str
    status: str
    device: str
    place: str
    count: int
    first_at: datetime
    last_at: datetime
    message: str
    snapshot_key: str
    case_id: int | None
    acknowledged_by: str


def alarm_rows(*, session: Session, language: str = "zh", include_cleared: bool = False,
               limit: int = 500) -> list[AlarmRow]:
    """Alarms (open ones unless asked), most recent first."""
    query = (select(Alarm, Device.code, Building.name).join(Device, Device.id == Alarm.device_id)
             .join(Building, Building.id == Device.building_id, isouter=True))
    if not include_cleared:
        query = query.where(Alarm.status != AlarmStatus.cleared)
    query = query.order_by(col(Alarm.last_at).desc()).limit(limit)
    return [AlarmRow(a.id or 0, alarm_name(a.alarm_type, language), str(a.severity), str(a.status), code,
                     building or "", a.count, a.first_at, a.last_at, a.message, a.snapshot_key, a.case_id,
                     a.acknowledged_by) for a, code, building in session.exec(query).all()]


def masked_credential(method: str, reference: str) -> str:
    """A credential reference as shown: an ID number masked as one, anything else like a phone number."""
    return mask_id_number(reference) if method == "id_card" else mask_phone(reference)


def access_rows(*, session: Session, limit: int = 200) -> list[dict[str, Any]]:
    """Recent access records, credential references masked (no images exist to show)."""
    query = (select(AccessRecord, Device.code).join(Device, Device.id == AccessRecord.device_id)
             .order_by(col(AccessRecord.ts).desc()).limit(limit))
    return [{"ts": r.ts, "gate": code, "method": r.method, "credential": masked_credential(r.method, r.credential_ref),
             "direction": r.direction, "granted": r.granted} for r, code in session.exec(query).all()]


def vehicle_rows(*, session: Session, limit: int = 200) -> list[dict[str, Any]]:
    """Recent vehicle records, plates masked."""
    query = (select(VehicleRecord, Device.code).join(Device, Device.id == VehicleRecord.device_id)
             .order_by(col(VehicleRecord.ts).desc()).limit(limit))
    return [{"ts": r.ts, "gate": code, "plate": mask_plate(r.plate), "direction": r.direction, "granted": r.granted}
            for r, code in session.exec(query).all()]
