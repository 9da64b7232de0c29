"""Downlink commands: broadcast text to a loudspeaker, open a gate, reset or read a device.

A command is recorded (status ``sent``, a deadline) and published on the device's ``cmd`` topic;
ingest marks it ``acked`` or ``failed`` when the device's ``cmd_ack`` arrives; a command still
``sent`` after its deadline is marked ``timeout`` by `expire` (the device-health flow) or by
`wait_for_answer`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, update
from sqlmodel import Session, select

from linli.devices import protocol
from linli.devices.registry import DEVICE_TYPES
from linli.errors import DeliveryError, NotFound
from linli.models import Community, Device, DeviceCommand, utcnow
from linli.models.devices import CommandStatus

Publish = Callable[[str, bytes], None]


class MqttPublisher:
    """Publishes downlinks at QoS 1 and waits for the broker to take each; use as a context manager."""

    def __init__(self, host: str, port: int, *, username: str = "", password: str = "", timeout: float = 10) -> None:
        self.timeout = timeout
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"linli-cmd-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password or None)
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as err:
            raise DeliveryError(f"cannot reach the MQTT broker at {host}:{port}: {err}",
                                hint="check LINLI_MQTT__HOST / LINLI_MQTT__PORT and that the broker runs") from err
        self.client.loop_start()

    def __call__(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=self.timeout)
        if not info.is_published():
            raise DeliveryError(f"the broker did not take the command on {topic}", hint="try again")

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def send(session: Session, publish: Publish, *, device_code: str, command: str, args: dict[str, Any] | None = None,
         requested_by: str = "system", timeout_seconds: float = 30) -> DeviceCommand:
    """Record and publish a command (commits); ValidationError for a command the device does not take."""
    device = session.exec(select(Device).where(Device.code == device_code)).first()
    if device is None:
        raise NotFound(f"no device {device_code}", hint="list devices with `linli devices list`")
    args = dict(args or {})
    protocol.check_command(DEVICE_TYPES[device.device_type], command, args)
    community = session.get(Community, device.community_id)
    assert community is not None and device.id is not None
    now = utcnow()
    row = DeviceCommand(cmd_id=uuid.uuid4().hex, device_id=device.id, command=command, args=args,
                        requested_by=requested_by, sent_at=now, timeout_at=now + timedelta(seconds=timeout_seconds))
    session.add(row)
    session.commit()  # recorded before it leaves, so an answer always finds it
    try:
        publish(protocol.topic(community.code, device.device_type, device.code, protocol.Kind.cmd),
                protocol.command_payload(row.cmd_id, command, args, now))
    except DeliveryError as err:
        row.status, row.result, row.answered_at = CommandStatus.failed, {"error": str(err)}, utcnow()
        session.add(row)
        session.commit()
        raise
    return row


def expire(session: Session, *, now: datetime) -> int:
    """Mark commands past their deadline without an answer as timed out; returns how many."""
    c = DeviceCommand.__table__.c  # type: ignore[attr-defined]
    result = session.execute(update(DeviceCommand.__table__).where(  # type: ignore[arg-type]
        c.status == CommandStatus.sent.value, c.timeout_at < now).values(status=CommandStatus.timeout.value,
                                                                          answered_at=now))
    return int(result.rowcount or 0)


def wait_for_answer(engine: Engine, cmd_id: str, *, poll: float = 0.1) -> DeviceCommand:
    """Wait until the command is answered or past its deadline (then marked timeout); returns it."""
    while True:
        with Session(engine, expire_on_commit=False) as session:
            row = session.exec(select(DeviceCommand).where(DeviceCommand.cmd_id == cmd_id)).one()
            if row.status != CommandStatus.sent:
                return row
            if utcnow() >= row.timeout_at:
                expire(session, now=utcnow())
                session.commit()
                session.refresh(row)
                return row
        time.sleep(poll)
