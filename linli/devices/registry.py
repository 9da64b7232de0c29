"""The device types Linli knows: their metrics, event kinds and default alarm rules — as tables.

Each ``DeviceTypeSpec`` says what a device of that type may publish; ``linli.devices.protocol``
builds the payload schemas from these tables, and ``linli.devices.alarms`` evaluates the rules.
Admins override the rules in the alarm-rules block (blocks/alarms.py); the defaults live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from linli.errors import ValidationError


class AccessMethod(StrEnum):
    """How a person opened an access gate; every method has a fallback (design: privacy and trust)."""

    face = "face"
    card = "card"
    qr = "qr"
    id_card = "id_card"
    fingerprint = "fingerprint"
    app = "app"


@dataclass(frozen=True)
class Metric:
    """One telemetry value a device type reports, with its unit and plausible range."""

    name: str
    unit: str
    low: float
    high: float


@dataclass(frozen=True)
class DeviceTypeSpec:
    """What one device type is and may publish."""

    code: str
    name_zh: str
    name_en: str
    metrics: tuple[Metric, ...] = ()
    events: tuple[str, ...] = ()
    heartbeat_seconds: int = 60
    commands: tuple[str, ...] = ("read", "reset")
    record: Literal["", "access", "vehicle"] = ""  # events that are also access / vehicle records
    snapshot: bool = False  # events may carry a snapshot image (base64)

    def metric(self, name: str) -> Metric | None:
        """The metric called `name`, if this type has it."""
        return next((m for m in self.metrics if m.name == name), None)


RuleKind = Literal["threshold", "duration", "rate", "event"]
Operator = Literal[">=", ">", "<=", "<"]


class AlarmRule(BaseModel):
    """One alarm rule of one device type; Prefect renders these as a form in the alarm-rules block."""

    model_config = ConfigDict(extra="forbid")

    device_type: str = Field(description="Device type code, e.g. gas.")
    alarm_type: str = Field(min_length=1, max_length=40, description="Name of the alarm, e.g. gas_leak.")
    kind: RuleKind = Field(description="threshold: value crosses a limit; duration: stays past it for `seconds`; "
                                       "rate: changes by `value` or more per minute; event: the device reports "
                                       "one of `events`.")
    metric: str = Field(default="", description="Telemetry metric (threshold, duration, rate).")
    op: Operator = Field(default=">=", description="Comparison with `value`.")
    value: float = Field(default=0, description="Limit (threshold, duration) or change per minute (rate).")
    seconds: float = Field(default=0, ge=0, description="How long the limit must be passed (duration).")
    events: list[str] = Field(default_factory=list, description="Event kinds that raise it (event).")
    severity: Literal["critical", "major", "minor", "warning"] = "major"
    life_safety: bool = Field(default=False, description="Life-safety alarm (gas, smoke, SOS, fall, fire): "
                              "on-duty staff are notified at once, from ingest.")
    notify: bool = Field(default=False, description="Notify on-duty staff at once even if not life-safety.")
    opens_case: bool = Field(default=True, description="Open a case when the alarm is raised.")
    category: str = Field(default="facility_repair", description="Category of the case it opens.")

    @model_validator(mode="after")
    def _fits_its_type(self) -> AlarmRule:
        spec = DEVICE_TYPES.get(self.device_type)
        if spec is None:
            raise ValueError(f"unknown device type {self.device_type!r}; use one of {', '.join(DEVICE_TYPES)}")
        if self.kind == "event":
            unknown = [e for e in self.events if e not in spec.events]
            if not self.events or unknown:
                raise ValueError(f"{self.alarm_type}: events must be some of {', '.join(spec.events)}")
        elif spec.metric(self.metric) is None:
            names = ", ".join(m.name for m in spec.metrics) or "(none)"
            raise ValueError(f"{self.alarm_type}: {self.device_type} has no metric {self.metric!r}; metrics: {names}")
        if self.kind == "duration" and self.seconds <= 0:
            raise ValueError(f"{self.alarm_type}: a duration rule needs seconds > 0")
        return self


def _m(name: str, unit: str, low: float, high: float) -> Metric:
    return Metric(name, unit, low, high)


SPECS: tuple[DeviceTypeSpec, ...] = (
    DeviceTypeSpec("smoke", "烟感", "Smoke sensor",
                   (_m("obscuration", "%/m", 0, 100), _m("temperature", "°C", -40, 150)),
                   ("smoke_alarm", "tamper", "fault"), heartbeat_seconds=300),
    DeviceTypeSpec("gas", "燃气探测器", "Gas detector", (_m("gas_lel", "%LEL", 0, 100),),
                   ("gas_alarm", "fault"), heartbeat_seconds=300, commands=("read", "reset", "close_valve")),
    DeviceTypeSpec("manhole", "智能井盖", "Manhole cover",
                   (_m("tilt_deg", "°", 0, 180), _m("water_level_cm", "cm", 0, 500)),
                   ("opened", "fault"), heartbeat_seconds=600),
    DeviceTypeSpec("throwing_camera", "高空抛物摄像机", "Throwing camera", (),
                   ("object_thrown", "fault"), snapshot=True),
    DeviceTypeSpec("sos_button", "一键告警", "One-key SOS", (), ("sos", "fault"), heartbeat_seconds=300),
    DeviceTypeSpec("fire_water_pressure", "消防水压", "Fire water pressure", (_m("pressure_mpa", "MPa", 0, 3),),
                   ("fault",), heartbeat_seconds=300),
    DeviceTypeSpec("fire_alarm_host", "消防报警主机", "Fire alarm host", (),
                   ("fire", "fault", "supervisory")),
    DeviceTypeSpec("door_magnet", "门磁", "Door magnet", (), ("opened", "closed", "forced_open")),
    DeviceTypeSpec("smart_peephole", "智能猫眼", "Smart peephole", (), ("visitor", "loitering"), snapshot=True),
    DeviceTypeSpec("fall_alarm", "跌倒/异常状态报警", "Fall / abnormal-state alarm",
                   (_m("heart_rate", "bpm", 0, 250),), ("fall", "abnormal_stillness"), heartbeat_seconds=120),
    DeviceTypeSpec("access_gate", "门禁", "Access gate", (), ("access", "forced_open", "fault"),
                   commands=("read", "reset", "open_gate"), record="access"),
    DeviceTypeSpec("vehicle_barrier", "道闸", "Vehicle barrier", (), ("vehicle", "blocked", "fault"),
                   commands=("read", "reset", "open_gate"), record="vehicle"),
    DeviceTypeSpec("lamp_post", "智慧灯杆", "Smart lamp post",
                   (_m("lux", "lx", 0, 200000), _m("power_w", "W", 0, 2000)), ("lamp_fault",), heartbeat_seconds=300),
    DeviceTypeSpec("loudspeaker", "云播音柱", "Cloud-broadcast loudspeaker", (_m("volume", "%", 0, 100),),
                   ("fault",), commands=("read", "reset", "broadcast")),
    DeviceTypeSpec("patrol_checkpoint", "巡更点", "Patrol checkpoint", (), ("checkin",), heartbeat_seconds=600),
)
DEVICE_TYPES: dict[str, DeviceTypeSpec] = {spec.code: spec for spec in SPECS}

# Which alarm types are life-safety is in the rules (life_safety=True): gas, smoke, SOS, fall, fire host.
_R = AlarmRule
DEFAULT_RULES: tuple[AlarmRule, ...] = (
    _R(device_type="gas", alarm_type="gas_leak", kind="threshold", metric="gas_lel", op=">=", value=20,
       severity="critical", life_safety=True, category="fire_hazard"),
    _R(device_type="gas", alarm_type="gas_leak", kind="event", events=["gas_alarm"], severity="critical",
       life_safety=True, category="fire_hazard"),
    _R(device_type="gas", alarm_type="gas_rising", kind="rate", metric="gas_lel", op=">=", value=10,
       severity="major", category="fire_hazard"),
    _R(device_type="smoke", alarm_type="smoke", kind="event", events=["smoke_alarm"], severity="critical",
       life_safety=True, category="fire_hazard"),
    _R(device_type="smoke", alarm_type="overheat", kind="duration", metric="temperature", op=">=", value=60,
       seconds=30, severity="major", category="fire_hazard"),
    _R(device_type="manhole", alarm_type="manhole_displaced", kind="threshold", metric="tilt_deg", op=">=",
       value=15, severity="major", category="public_security"),
    _R(device_type="manhole", alarm_type="manhole_opened", kind="event", events=["opened"], severity="major",
       category="public_security"),
    _R(device_type="manhole", alarm_type="manhole_overflow", kind="duration", metric="water_level_cm", op=">=",
       value=50, seconds=120, severity="minor", category="facility_repair"),
    _R(device_type="throwing_camera", alarm_type="object_thrown", kind="event", events=["object_thrown"],
       severity="major", notify=True, category="public_security"),
    _R(device_type="sos_button", alarm_type="sos", kind="event", events=["sos"], severity="critical",
       life_safety=True, category="elderly_care"),
    _R(device_type="fire_water_pressure", alarm_type="low_water_pressure", kind="duration", metric="pressure_mpa",
       op="<=", value=0.1, seconds=60, severity="major", category="fire_hazard"),
    _R(device_type="fire_water_pressure", alarm_type="pressure_drop", kind="rate", metric="pressure_mpa", op="<=",
       value=-0.2, severity="minor", category="fire_hazard"),
    _R(device_type="fire_alarm_host", alarm_type="fire", kind="event", events=["fire"], severity="critical",
       life_safety=True, category="fire_hazard"),
    _R(device_type="fire_alarm_host", alarm_type="fire_host_fault", kind="event", events=["fault", "supervisory"],
       severity="minor", category="fire_hazard"),
    _R(device_type="door_magnet", alarm_type="door_forced", kind="event", events=["forced_open"], severity="major",
       category="public_security"),
    _R(device_type="smart_peephole", alarm_type="loitering", kind="event", events=["loitering"], severity="warning",
       opens_case=False, category="public_security"),
    _R(device_type="fall_alarm", alarm_type="fall", kind="event", events=["fall"], severity="critical",
       life_safety=True, category="elderly_care"),
    _R(device_type="fall_alarm", alarm_type="abnormal_stillness", kind="event", events=["abnormal_stillness"],
       severity="major", life_safety=True, category="elderly_care"),
    _R(device_type="access_gate", alarm_type="gate_forced", kind="event", events=["forced_open"], severity="minor",
       category="public_security"),
    _R(device_type="vehicle_barrier", alarm_type="barrier_blocked", kind="event", events=["blocked"],
       severity="warning", opens_case=False, category="public_security"),
    _R(device_type="lamp_post", alarm_type="lamp_overload", kind="threshold", metric="power_w", op=">=", value=400,
       severity="minor", category="facility_repair"),
    _R(device_type="lamp_post", alarm_type="lamp_fault", kind="event", events=["lamp_fault"], severity="minor",
       category="facility_repair"),
)


# What people read for each alarm type (zh-CN, en); the rule table names the types.
ALARM_NAMES: dict[str, tuple[str, str]] = {
    "gas_leak": ("燃气泄漏", "Gas leak"), "gas_rising": ("燃气浓度快速上升", "Gas rising fast"),
    "smoke": ("烟雾报警", "Smoke alarm"), "overheat": ("温度过高", "Overheating"),
    "manhole_displaced": ("井盖位移", "Manhole cover displaced"), "manhole_opened": ("井盖被打开", "Manhole opened"),
    "manhole_overflow": ("井下水位过高", "Manhole water high"), "object_thrown": ("高空抛物", "Object thrown"),
    "sos": ("一键求助", "SOS"), "low_water_pressure": ("消防水压不足", "Low fire-water pressure"),
    "pressure_drop": ("消防水压骤降", "Fire-water pressure dropping"), "fire": ("火警", "Fire alarm"),
    "fire_host_fault": ("消防主机故障", "Fire host fault"), "door_forced": ("门被强行打开", "Door forced open"),
    "loitering": ("门外有人徘徊", "Loitering"), "fall": ("老人跌倒", "Fall detected"),
    "abnormal_stillness": ("老人长时间无活动", "No movement for long"), "gate_forced": ("门禁被强开", "Gate forced"),
    "barrier_blocked": ("道闸受阻", "Barrier blocked"), "lamp_overload": ("灯杆功率异常", "Lamp overload"),
    "lamp_fault": ("路灯故障", "Lamp fault"), "offline": ("设备离线", "Device offline"),
    "low_battery": ("电量低", "Low battery"),
}
SEVERITY_NAMES: dict[str, tuple[str, str]] = {
    "critical": ("紧急", "critical"), "major": ("重要", "major"), "minor": ("次要", "minor"),
    "warning": ("提示", "warning"),
}


def alarm_name(alarm_type: str, language: str = "zh") -> str:
    """The name people read for an alarm type (its code when it has none)."""
    names = ALARM_NAMES.get(alarm_type)
    if names is None:
        return alarm_type
    return names[1] if language == "en" else names[0]


def device_type(code: str) -> DeviceTypeSpec:
    """The spec of a device type; ValidationError naming the known types otherwise."""
    spec = DEVICE_TYPES.get(code)
    if spec is None:
        raise ValidationError(f"unknown device type {code!r}", field="device_type",
                              hint=f"use one of: {', '.join(DEVICE_TYPES)}")
    return spec


@dataclass
class RuleBook:
    """Alarm rules grouped by device type, for quick look-up by ingest."""

    rules: tuple[AlarmRule, ...] = DEFAULT_RULES
    by_type: dict[str, list[AlarmRule]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_type = {}
        for rule in self.rules:
            self.by_type.setdefault(rule.device_type, []).append(rule)

    def for_type(self, code: str) -> list[AlarmRule]:
        """The rules of one device type (empty when it has none)."""
        return self.by_type.get(code, [])
