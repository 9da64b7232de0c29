"""Devices and MQTT payloads for the device tests, made through the real inventory functions."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlmodel import Session

from linli.devices.inventory import DeviceIn, add_device
from linli.devices.protocol import topic
from linli.models import Device
from tests.factories import seeded


def devices(session: Session, *specs: tuple[str, str]) -> dict[str, Device]:
    """Seed the sample street office and add devices (code, type) in building XFL-B1; committed."""
    seeded(session)
    made = {code: add_device(session, DeviceIn(code=code, device_type=kind, building="XFL-B1", floor=3))
            for code, kind in specs}
    session.commit()
    return made


def message(kind: str, device_type: str, code: str, body: dict[str, Any], *,
            community: str = "XFL") -> tuple[str, bytes]:
    """(topic, JSON bytes) of an uplink; `ts` is now unless given."""
    body = {"ts": time.time(), **body}
    return topic(community, device_type, code, kind), json.dumps(body, ensure_ascii=False).encode()
