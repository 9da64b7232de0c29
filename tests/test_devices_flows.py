"""The device-health and data-hub DAGs through the generic runner, on Prefect's test harness."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from flows.dag_runner import run_dag
from linli.models import Case, CaseSource, Device, DeviceState, utcnow
from linli.settings import Settings
from tests.device_factories import devices


def test_device_health_flow_opens_one_maintenance_case_per_offline_device(
        prefect_server: None, settings: Settings, engine: Engine, session: Session) -> None:
    made = devices(session, ("M-1", "manhole"), ("L-1", "lamp_post"))
    long_ago = utcnow() - timedelta(hours=3)
    session.execute(update(Device).values(state=DeviceState.online, last_seen=long_ago, battery=50))
    session.commit()
    first = asyncio.run(run_dag(dag="device-health", params={"poll_suspects": False}))
    second = asyncio.run(run_dag(dag="device-health", params={"poll_suspects": False}))
    assert first == {"sweep": "completed", "open_cases": "completed", "publish": "completed", "poll": "skipped"}
    assert second["open_cases"] == "skipped" and second["publish"] == "skipped"  # nothing new: no second case
    cases = session.execute(select(Case)).scalars().all()
    assert len(cases) == 2 and {c.source for c in cases} == {CaseSource.device_health}
    assert made["M-1"].code in " ".join(c.description for c in cases)


def test_datahub_push_flow_reads_the_endpoint_blocks(prefect_server: None, settings: Settings, engine: Engine,
                                                     session: Session) -> None:
    from blocks.datahub import DatahubEndpoint
    from linli.devices.writer import BatchWriter, Incoming
    from linli.receiver import NotificationReceiver
    from tests.device_factories import message

    devices(session, ("A-1", "access_gate"))
    BatchWriter(engine).write([Incoming(*message("event", "access_gate", "A-1", {
        "id": f"a{i}", "event": "access", "method": "card", "credential_ref": f"CARD-{i:05d}"})) for i in range(5)])
    with NotificationReceiver() as receiver:
        DatahubEndpoint(url=f"{receiver.url}/hub", auth_value="Bearer t").save("test-hub", overwrite=True)
        steps = asyncio.run(run_dag(dag="datahub-push", params={"endpoints": ["test-hub"], "deadline_seconds": 10}))
    assert steps == {"push": "completed", "alert": "skipped"}  # delivered: nothing parked, nobody alerted
    assert len(receiver.messages) == 1
    records = receiver.messages[0]["json"]["records"]
    assert len(records) == 5 and all(r["credential_ref"].startswith("CAR") and "*" in r["credential_ref"]
                                     for r in records)


def test_ingest_reads_alarm_rules_from_the_block(prefect_server: None) -> None:
    from prefect.settings import PREFECT_API_URL

    from blocks.alarms import AlarmRules
    from linli.devices.registry import AlarmRule
    from linli.devices.rules_source import load_rules

    stricter = AlarmRule(device_type="gas", alarm_type="gas_leak", kind="threshold", metric="gas_lel", op=">=",
                         value=10, severity="critical", life_safety=True, category="fire_hazard")
    AlarmRules(rules=[stricter]).save("strict", overwrite=True)
    book = load_rules(str(PREFECT_API_URL.value()), "strict")
    assert book is not None and [r.value for r in book.for_type("gas")] == [10]
    assert load_rules(str(PREFECT_API_URL.value()), "no-such-block") is None
