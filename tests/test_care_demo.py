"""The demo's elderly-care watch: the simulated community has residents living alone with door magnets;
the one whose door never opens gets a welfare check for their grid worker, the others none."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from flows.dag_runner import run_dag
from linli.demo_devices import care_watch_soon
from linli.devices.simulator import Generator, equip, watch_living_alone
from linli.devices.writer import BatchWriter, Incoming
from linli.models import Building, Case, CaseStatus, Device, Grid, Resident, utcnow
from linli.models.registry import ResidentDetail, WelfareCheck
from linli.settings import Settings


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server for the DAG runs in this module."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


def demo_community(session: Session) -> tuple[Generator, list]:
    """The demo's fleet (8 buildings) with three residents living alone, one of them silent."""
    fleet = equip(session, buildings=8, heartbeat_seconds=30)
    watched = watch_living_alone(session, fleet, count=3, silent=1)
    session.commit()
    return Generator(fleet, random.Random(7), shut=frozenset(w.door for w in watched if w.silent)), watched


def test_the_demo_community_has_residents_living_alone_with_their_door_magnets(session: Session) -> None:
    _, watched = demo_community(session)
    assert [w.silent for w in watched] == [False, False, True]
    for w in watched:
        detail = session.get(ResidentDetail, w.resident_id)
        resident = session.get(Resident, w.resident_id)
        door = session.exec(select(Device).where(Device.code == w.door)).one()
        assert detail is not None and resident is not None and detail.living_alone
        assert detail.door_device_id == door.id and door.device_type == "door_magnet"
        assert door.building_id == resident.building_id  # the magnet is on their own building's door
    again = watch_living_alone(session, equip(session, buildings=8), count=3, silent=1)
    assert again == watched  # idempotent: the demo can restart on the same database


def test_the_simulator_never_opens_a_silent_residents_door(session: Session) -> None:
    generator, watched = demo_community(session)
    doors = {w.door: w.silent for w in watched}
    events: dict[str, set[str]] = {code: set() for code in doors}
    for device in [d for d in generator.fleet if d.code in doors] * 50:
        _, payload = generator.uplink(device)
        body = json.loads(payload)
        events[device.code].add(body.get("event", "heartbeat"))
    for code, silent in doors.items():
        assert (events[code] == {"heartbeat"}) is silent, (code, events[code])


def test_the_care_watch_dag_sends_the_silent_resident_to_the_grid_worker_and_no_one_else(
    prefect_server: None, settings: Settings, engine: Engine, session: Session
) -> None:
    generator, watched = demo_community(session)
    doors = {w.door for w in watched}
    # Registered long ago: only their doors opening (below) can keep the active residents off the list.
    for w in watched:
        detail = session.get(ResidentDetail, w.resident_id)
        assert detail is not None
        detail.updated_at = utcnow() - timedelta(hours=3)
        session.add(detail)
    session.commit()
    # A few rounds of the simulated fleet's door magnets, through the devices' real ingest writer.
    batch = [Incoming(*generator.uplink(d)) for d in [d for d in generator.fleet if d.code in doors] * 20]
    assert BatchWriter(engine).write(batch).written == len(batch)
    assert asyncio.run(run_dag(dag="care-watch")) == {"silent": "completed", "welfare_checks": "completed"}
    checks = session.exec(select(WelfareCheck)).all()
    silent = next(w for w in watched if w.silent)
    assert [c.resident_id for c in checks] == [silent.resident_id]  # none for the residents who open their door
    case = session.get(Case, checks[0].case_id)
    resident = session.get(Resident, silent.resident_id)
    assert case is not None and resident is not None
    building = session.get(Building, resident.building_id)
    grid = session.get(Grid, building.grid_id) if building else None
    assert grid is not None and grid.grid_worker_id is not None
    assert case.status == CaseStatus.dispatched and case.assignee_id == grid.grid_worker_id
    # The check is open: the next run opens nothing new.
    assert asyncio.run(run_dag(dag="care-watch"))["welfare_checks"] == "skipped"


def test_the_demo_schedules_a_care_watch_run_soon_instead_of_in_30_minutes(prefect_server: None,
                                                                            settings: Settings) -> None:
    from flows.deployments import current_definitions, dag_deployments
    from linli.dag.registry import load_task_modules

    definitions = asyncio.run(current_definitions(settings.dag.definitions_dir,
                                                  load_task_modules(settings.dag.task_modules)))
    [deployment] = dag_deployments({"care-watch": definitions["care-watch"]})
    deployment_id = deployment.apply()
    api_url = str(PREFECT_API_URL.value())
    before = datetime.now(UTC)  # the module's server is shared by both databases' runs of this test
    assert care_watch_soon(api_url, delay=90, wait=10)
    runs = httpx.post(f"{api_url}/flow_runs/filter", timeout=10,
                      json={"deployments": {"id": {"any_": [str(deployment_id)]}}}).json()
    soon = [r for r in runs if r["state"]["type"] == "SCHEDULED" and datetime.fromisoformat(r["created"]) >= before
            and 60 < (datetime.fromisoformat(r["next_scheduled_start_time"]) - datetime.now(UTC)).total_seconds() < 120]
    assert len(soon) == 1


def test_the_simulated_residents_never_report_for_a_resident_living_alone(engine: Engine, session: Session) -> None:
    from linli.events import RecordingBus
    from linli.simulator import Simulator, SimulatorPlan
    from tests.factories import CONFIG

    _, watched = demo_community(session)
    sim = Simulator(engine=engine, bus=RecordingBus(), config=CONFIG,
                    plan=SimulatorPlan(anonymous_share=0, max_open=1000, seed=3))
    for _ in range(40):
        sim._act(sim._file_report)
    reporters = set(session.exec(select(Case.reporter_id)).all())
    assert len(reporters) > 5  # reports came from many residents …
    assert not reporters & {w.resident_id for w in watched}  # … none of them living alone (a report is activity)
