"""Device health, swept on a schedule by the device-health flow: offline, back online, low battery, suspects.

A device silent for more than `factor` × its heartbeat interval goes offline and gets an open
``offline`` alarm — one per device until it is heard from again (the alarm is then cleared by the
system), so its maintenance case is opened once. Low battery works the same way. Devices silent
for more than one interval but not yet offline are "suspects": the flow sends them a ``read``
command, and an answer (cmd_ack) counts as being heard from. Devices never heard from since they
were registered stay offline without a case (not installed yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, select

from linli.devices.alarms import Trigger, clear, raise_alarms
from linli.devices.registry import DEVICE_TYPES, AlarmRule
from linli.models import Alarm, AlarmStatus, Device, DeviceState

SYSTEM = "system:device-health"
# Health rules are not per-type telemetry rules, so they are built without the registry's checks.
OFFLINE_RULE = AlarmRule.model_construct(device_type="*", alarm_type="offline", kind="event", metric="", op=">=",
                                         value=0, seconds=0, events=[], severity="minor", life_safety=False,
                                         notify=False, opens_case=True, category="facility_repair")
LOW_BATTERY_RULE = AlarmRule.model_construct(device_type="*", alarm_type="low_battery", kind="threshold",
                                             metric="battery", op="<=", value=0, seconds=0, events=[],
                                             severity="warning", life_safety=False, notify=False, opens_case=True,
                                             category="facility_repair")


@dataclass
class HealthReport:
    """What one sweep found and did."""

    offline: list[str] = field(default_factory=list)
    back_online: list[str] = field(default_factory=list)
    low_battery: list[str] = field(default_factory=list)
    suspects: list[str] = field(default_factory=list)
    new_alarms: list[tuple[int, str]] = field(default_factory=list)  # (alarm id, case category)


def _open_alarms(session: Session, alarm_type: str) -> dict[int, Alarm]:
    rows = session.exec(select(Alarm).where(Alarm.alarm_type == alarm_type,
                                            Alarm.status != AlarmStatus.cleared)).all()
    return {row.device_id: row for row in rows}


def sweep(session: Session, *, now: datetime, factor: float = 2.0, low_battery: int = 20) -> HealthReport:
    """Mark silent devices offline, clear alarms of devices that are back, flag low batteries (caller commits)."""
    report = HealthReport()
    offline_open = _open_alarms(session, "offline")
    battery_open = _open_alarms(session, "low_battery")
    triggers: list[Trigger] = []
    for device in session.exec(select(Device).where(Device.state != DeviceState.maintenance)).all():
        assert device.id is not None
        if device.last_seen is None:
            continue
        silent = now - device.last_seen
        beat = timedelta(seconds=device.heartbeat_seconds)
        if device.state == DeviceState.online and silent > beat * factor:
            device.state = DeviceState.offline
            session.add(device)
            report.offline.append(device.code)
            if device.id not in offline_open:
                triggers.append(Trigger(device.id, OFFLINE_RULE, now, silent.total_seconds(),
                                        f"silent for {int(silent.total_seconds())} s "
                                        f"(heartbeat every {device.heartbeat_seconds} s)"))
        elif device.state == DeviceState.online and device.id in offline_open:
            clear(session, offline_open[device.id].id, by=SYSTEM)  # type: ignore[arg-type]
            report.back_online.append(device.code)
        elif device.state == DeviceState.online and silent > beat:
            if "read" in DEVICE_TYPES[device.device_type].commands:
                report.suspects.append(device.code)
        if device.battery is not None and device.battery <= low_battery:
            if device.id not in battery_open:
                triggers.append(Trigger(device.id, LOW_BATTERY_RULE, now, float(device.battery),
                                        f"battery {device.battery}% (≤ {low_battery}%)"))
                report.low_battery.append(device.code)
        elif device.id in battery_open:
            clear(session, battery_open[device.id].id, by=SYSTEM)  # type: ignore[arg-type]
    session.flush()
    if triggers:
        new = raise_alarms(session.connection(), triggers)
        report.new_alarms = [(alarm.alarm_id, alarm.rule.category) for alarm in new]
    return report
