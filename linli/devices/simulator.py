"""A simulated community of devices on MQTT (`linli simulate`, the demo and the benchmarks).

`equip` registers M devices of every type in N buildings; `DeviceSimulator` publishes realistic
telemetry, heartbeats, events, access and vehicle records at a set rate, with an occasional
life-safety alarm and a small share of malformed messages (which ingest dead-letters).
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session, select

from linli.devices.protocol import Kind, topic
from linli.devices.registry import DEVICE_TYPES, AccessMethod
from linli.models import Building, Community, Device, Resident, utcnow
from linli.models.registry import ResidentDetail
from linli.seed import seed_sample

log = logging.getLogger(__name__)

# Normal readings per metric: (mean, spread); alarms push them out of range on purpose.
NORMAL: dict[str, tuple[float, float]] = {
    "obscuration": (0.5, 0.3), "temperature": (24, 3), "gas_lel": (2, 1), "tilt_deg": (1, 0.5),
    "water_level_cm": (10, 5), "pressure_mpa": (0.35, 0.03), "heart_rate": (72, 8), "lux": (300, 100),
    "power_w": (120, 20), "volume": (60, 5),
}
ALARMS: dict[str, dict[str, Any]] = {  # what a simulated life-safety alarm looks like per type
    "gas": {"kind": Kind.telemetry, "body": {"metrics": {"gas_lel": 35.0}}},
    "smoke": {"kind": Kind.event, "body": {"event": "smoke_alarm"}},
    "sos_button": {"kind": Kind.event, "body": {"event": "sos"}},
    "fall_alarm": {"kind": Kind.event, "body": {"event": "fall"}},
    "fire_alarm_host": {"kind": Kind.event, "body": {"event": "fire", "detail": "3F 烟感联动"}},
}
QUIET_EVENTS: dict[str, list[str]] = {"door_magnet": ["opened", "closed"], "patrol_checkpoint": ["checkin"],
                                      "smart_peephole": ["visitor"]}
PROVINCES = "皖苏浙沪京"
TINY_JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"simulated-snapshot" + b"\xff\xd9").decode()


@dataclass(frozen=True)
class SimDevice:
    """A device the simulator speaks for."""

    code: str
    device_type: str
    community: str


def equip(session: Session, *, buildings: int = 4, per_type: int = 1,
          heartbeat_seconds: int | None = None) -> list[SimDevice]:
    """Register `per_type` devices of every type in each of the first `buildings` buildings (idempotent).

    `heartbeat_seconds` overrides the types' intervals (the demo uses a short one so a muted
    device goes offline within minutes).
    """
    seed_sample(session)
    rows = session.exec(select(Building).order_by(Building.id).limit(buildings)).all()
    existing = {d.code: d for d in session.exec(select(Device)).all()}
    fleet: list[SimDevice] = []
    for building in rows:
        community = session.get(Community, building.community_id)
        assert community is not None
        for spec in DEVICE_TYPES.values():
            for n in range(1, per_type + 1):
                code = f"{building.code}-{spec.code}-{n}"
                if code not in existing:
                    session.add(Device(code=code, device_type=spec.code, name=f"{building.name}{spec.name_zh}{n}",
                                       community_id=community.id, building_id=building.id, grid_id=building.grid_id,
                                       floor=n, heartbeat_seconds=heartbeat_seconds or spec.heartbeat_seconds))
                fleet.append(SimDevice(code, spec.code, community.code))
    session.flush()
    return fleet


@dataclass(frozen=True)
class WatchedResident:
    """A sample resident living alone, the door magnet on their home's door, and whether it stays shut."""

    resident_id: int
    door: str
    silent: bool


def watch_living_alone(session: Session, fleet: list[SimDevice], *, count: int, silent: int = 0,
                       hours: int = 1) -> list[WatchedResident]:
    """Mark the first resident of the first `count` door-magnet buildings as living alone and watched.

    The last `silent` of them are already overdue (their registration is back-dated past their
    watch hours) and the simulator never opens their door, so the next care-watch run opens a
    welfare check for them; the others' doors open every few seconds. The caller commits.
    """
    doors = [d for d in fleet if d.device_type == "door_magnet"][:count]
    watched: list[WatchedResident] = []
    for i, door in enumerate(doors):
        device = session.exec(select(Device).where(Device.code == door.code)).one()
        resident = session.exec(select(Resident).where(Resident.building_id == device.building_id)
                                .order_by(Resident.id)).first()
        if resident is None or resident.id is None:
            continue
        quiet = i >= len(doors) - silent
        detail = session.get(ResidentDetail, resident.id) or ResidentDetail(resident_id=resident.id)
        detail.living_alone, detail.watch_hours, detail.door_device_id = True, hours, device.id
        if quiet:  # silent since before their watch began: the first run after the demo starts raises it
            detail.updated_at = utcnow() - timedelta(hours=hours + 1)
        session.add(detail)
        watched.append(WatchedResident(resident.id, door.code, quiet))
    session.flush()
    return watched


@dataclass
class SimulatorOptions:
    """Where and how fast to publish."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""  # LINLI_MQTT__USERNAME / PASSWORD: a broker with password auth refuses anonymous clients
    password: str = ""
    rate: float = 50.0
    alarm_every: float = 60.0
    fault_share: float = 0.001
    seed: int | None = None
    mute: int = 0  # this many devices (the fleet's last) fall silent …
    mute_after: float = 60.0  # … after this many seconds, as if their power was cut
    shut_doors: frozenset[str] = frozenset()  # door magnets that only send heartbeats (a silent resident)


@dataclass
class Generator:
    """Builds plausible uplinks for a fleet (no MQTT: tests and benchmarks use it directly)."""

    fleet: list[SimDevice]
    rng: random.Random = field(default_factory=random.Random)
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    seq: int = 0
    readings: dict[tuple[str, str], float] = field(default_factory=dict)
    batteries: dict[str, float] = field(default_factory=dict)
    shut: frozenset[str] = frozenset()  # devices that send heartbeats only: a door nobody opens

    @property
    def last_id(self) -> str:
        """The message id of the last message built."""
        return f"{self.run}-{self.seq}"

    def _body(self, extra: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        return {"id": self.last_id, "ts": round(time.time(), 6), **extra}

    def uplink(self, device: SimDevice) -> tuple[str, bytes]:
        """One ordinary message from `device`: a heartbeat now and then, else telemetry or an event."""
        spec = DEVICE_TYPES[device.device_type]
        r = self.rng.random()
        quiet = (spec.record or spec.metrics or device.device_type in QUIET_EVENTS) and device.code not in self.shut
        if r < 0.1 or not quiet:  # SOS buttons, fire hosts, cameras: only heartbeats until something happens
            kind, body = Kind.heartbeat, {"battery": self._battery(device), "firmware": "1.2.0",
                                          "rssi": -self.rng.randint(40, 90)}
        elif spec.metrics:
            return self.telemetry(device)
        else:
            kind, body = Kind.event, self._event(device)
        return topic(device.community, device.device_type, device.code, kind), json.dumps(
            self._body(body), ensure_ascii=False).encode()

    def telemetry(self, device: SimDevice) -> tuple[str, bytes]:
        """An ordinary reading of each of `device`'s metrics, near their normal values."""
        spec = DEVICE_TYPES[device.device_type]
        metrics = {m.name: self._reading(device, m.name, m.low, m.high) for m in spec.metrics}
        return topic(device.community, device.device_type, device.code, Kind.telemetry), json.dumps(
            self._body({"metrics": metrics}), ensure_ascii=False).encode()

    def _battery(self, device: SimDevice) -> int:
        """A battery that drains slowly; about one device in forty starts nearly flat."""
        level = self.batteries.get(device.code)
        if level is None:
            level = 18.0 if self.rng.random() < 0.025 else self.rng.uniform(40, 100)
        level = max(0.0, level - 0.01)
        self.batteries[device.code] = level
        return int(level)

    def _reading(self, device: SimDevice, metric: str, low: float, high: float) -> float:
        """A smooth reading: drifts back towards the normal mean with small steps, as real sensors do."""
        mean, spread = NORMAL.get(metric, (low, 0))
        key = (device.code, metric)
        previous = self.readings.get(key, mean)
        value = mean + 0.9 * (previous - mean) + self.rng.gauss(0, spread * 0.1)
        self.readings[key] = value
        return round(max(low, min(high, value)), 3)

    def _event(self, device: SimDevice) -> dict[str, Any]:
        spec = DEVICE_TYPES[device.device_type]
        if spec.record == "access":
            method = self.rng.choice(list(AccessMethod))
            ref = (f"3401041990{self.rng.randint(10000000, 99999999)}" if method is AccessMethod.id_card
                   else f"{method.value.upper()}-{self.rng.randint(1, 5000):05d}")
            return {"event": "access", "method": method.value, "credential_ref": ref,
                    "direction": self.rng.choice(["in", "out"])}
        if spec.record == "vehicle":
            plate = f"{self.rng.choice(PROVINCES)}A{self.rng.randint(10000, 99999)}"
            return {"event": "vehicle", "plate": plate, "direction": self.rng.choice(["in", "out"])}
        return {"event": self.rng.choice(QUIET_EVENTS[device.device_type])}

    def alarm(self, device: SimDevice) -> tuple[str, bytes]:
        """A life-safety alarm from `device` (gas, smoke, SOS, fall or fire host)."""
        plan = ALARMS[device.device_type]
        return (topic(device.community, device.device_type, device.code, plan["kind"]),
                json.dumps(self._body(dict(plan["body"])), ensure_ascii=False).encode())

    def fault(self, device: SimDevice) -> tuple[str, bytes]:
        """A malformed message, of a random kind (not JSON, wrong schema, unknown device)."""
        which = self.rng.choice(["json", "schema", "device"])
        if which == "json":
            return topic(device.community, device.device_type, device.code, Kind.telemetry), b"\x00garbage{"
        if which == "schema":
            return (topic(device.community, device.device_type, device.code, Kind.heartbeat),
                    json.dumps({"ts": time.time(), "battery": 250}).encode())
        return (topic(device.community, device.device_type, "NO-SUCH-DEVICE", Kind.heartbeat),
                json.dumps({"ts": time.time(), "battery": 50}).encode())


def publisher(host: str, port: int, client_id: str = "", *, username: str = "", password: str = "") -> mqtt.Client:
    """A connected QoS 1 publisher: many messages in flight (not more than MQTT's 16-bit ids allow), no queue cap."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"linli-sim-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password or None)
    client.max_inflight_messages_set(30000)  # 0 (unlimited) reuses a packet id still in flight past 65,535
    client.max_queued_messages_set(0)
    connected = threading.Event()
    answers: list[Any] = []

    def on_connect(_client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        answers.append(reason_code)
        connected.set()

    client.on_connect = on_connect
    client.connect(host, port, keepalive=30)
    client.loop_start()
    # Publishing before the CONNACK marks each message "not connected" (it still goes out later).
    if not connected.wait(10):
        client.loop_stop()
        raise ConnectionError(f"no CONNACK from the MQTT broker at {host}:{port}")
    if answers[0].is_failure:  # e.g. a wrong LINLI_MQTT__PASSWORD: say so instead of publishing into nothing
        client.loop_stop()
        raise ConnectionError(f"the MQTT broker at {host}:{port} refused the connection: {answers[0]}")
    return client


class DeviceSimulator:
    """Publishes a fleet's uplinks at a steady rate until stopped."""

    def __init__(self, fleet: list[SimDevice], options: SimulatorOptions) -> None:
        if not fleet:
            raise ValueError("the simulator needs at least one device")
        self.fleet = fleet
        self.options = options
        self.generator = Generator(fleet, random.Random(options.seed), shut=options.shut_doors)
        self.sent = 0
        self.alarms_sent = 0
        self._stop = threading.Event()
        self._client: mqtt.Client | None = None

    def run(self, duration: float | None = None) -> None:
        """Publish until `duration` seconds have passed or stop() is called."""
        self._client = publisher(self.options.host, self.options.port, username=self.options.username,
                                 password=self.options.password)
        rng = self.generator.rng
        alarmers = [d for d in self.fleet[: len(self.fleet) - self.options.mute] if d.device_type in ALARMS]
        started = time.monotonic()
        next_alarm = started + self.options.alarm_every if self.options.alarm_every > 0 else float("inf")
        interval = 1.0 / self.options.rate
        due = started
        live = self.fleet
        while not self._stop.is_set():
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            if self.options.mute and live is self.fleet and now - started >= self.options.mute_after:
                live = self.fleet[: max(1, len(self.fleet) - self.options.mute)]
                log.info("simulator: %s device(s) fell silent: %s", len(self.fleet) - len(live),
                         ", ".join(d.code for d in self.fleet[len(live):]))
            device = live[self.sent % len(live)]
            if now >= next_alarm and alarmers:
                name, payload = self.generator.alarm(rng.choice(alarmers))
                next_alarm = now + self.options.alarm_every
                self.alarms_sent += 1
            elif rng.random() < self.options.fault_share:
                name, payload = self.generator.fault(device)
            else:
                name, payload = self.generator.uplink(device)
            self._client.publish(name, payload, qos=1)
            self.sent += 1
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self) -> None:
        """Stop publishing and disconnect (after what was published has left)."""
        self._stop.set()
        if self._client is not None:
            time.sleep(0.2)
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
