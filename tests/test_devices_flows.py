"""The device-health flow through Prefect's test harness."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from flows.devices import device_health
from linli.models import Case, CaseSource, Device, DeviceState, utcnow
from linli.settings import Settings
from tests.device_factories import devices


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server for the flows in this module."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_device_health_flow_opens_one_maintenance_case_per_offline_device(
        prefect_server: None, settings: Settings, engine: Engine, session: Session) -> None:
    made = devices(session, ("M-1", "manhole"), ("L-1", "lamp_post"))
    long_ago = utcnow() - timedelta(hours=3)
    session.execute(update(Device).values(state=DeviceState.online, last_seen=long_ago, battery=50))
    session.commit()
    first = asyncio.run(device_health(poll_suspects=False))
    second = asyncio.run(device_health(poll_suspects=False))
    assert sorted(first.offline) == ["L-1", "M-1"] and len(first.new_alarms) == 2
    assert second.offline == [] and second.new_alarms == []
    cases = session.execute(select(Case)).scalars().all()
    assert len(cases) == 2 and {c.source for c in cases} == {CaseSource.device_health}
    assert made["M-1"].code in " ".join(c.description for c in cases)
