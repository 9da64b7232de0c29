"""Data-hub pushes on events as well as on a schedule: ingest announces new outbox rows (coalesced), the
datahub-push deployment's trigger starts a run on a real Prefect server, and the records reach a real
receiver masked; the endpoint block (one definition of its fields) registers with its secret kept secret."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli.datahub import OUTBOX_RESOURCE, PENDING_EVENT, EndpointFields, PendingAnnouncer
from linli.devices.writer import BatchWriter, Incoming
from linli.events import RecordingBus, SignalOut
from linli.receiver import NotificationReceiver
from linli.settings import REPO_ROOT, Settings
from tests.device_factories import devices, message
from tests.mqtt_broker import Broker, mosquitto_path, run_broker

ID_NUMBER = "340104199001011234"


def _access(i: int) -> Incoming:
    return Incoming(*message("event", "access_gate", "A-1", {"id": f"a{i}", "event": "access", "method": "id_card",
                                                             "credential_ref": ID_NUMBER}))


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_new_outbox_rows_are_announced_at_most_once_per_interval() -> None:
    written, clock, bus = [0], [100.0], RecordingBus()
    announcer = PendingAnnouncer(lambda: written[0], bus.signal, interval=5, clock=lambda: clock[0])
    assert announcer.tick() == 0  # nothing written: nothing said
    written[0] = 3
    assert announcer.tick() == 3  # the first rows after a quiet spell: at once
    for _ in range(4):  # thousands a second for the next 4 s: held back …
        written[0] += 1000
        clock[0] += 1
        assert announcer.tick() == 0
    clock[0] += 1
    assert announcer.tick() == 4000  # … and announced together once the interval has passed
    clock[0] += 60
    assert announcer.tick() == 0  # quiet again
    assert [(s.name, s.resource_id, s.payload) for s in bus.signals] == [
        (PENDING_EVENT, OUTBOX_RESOURCE, {"records": 3}), (PENDING_EVENT, OUTBOX_RESOURCE, {"records": 4000})]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh Mosquitto on a free port."""
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (run `python -m tests.services` as root)")
    with run_broker(tmp_path) as running:
        yield running


def test_ingest_announces_the_records_it_writes_and_nothing_for_telemetry(
        engine: Engine, session: Session, settings: Settings, broker: Broker) -> None:
    from linli.devices.service import start_ingest
    from linli.devices.simulator import publisher

    devices(session, ("A-1", "access_gate"), ("G-1", "gas"))
    bus = RecordingBus()
    ingest_settings = settings.model_copy(update={
        "mqtt": settings.mqtt.model_copy(update={"port": broker.port}),
        "datahub": settings.datahub.model_copy(update={"signal_seconds": 1.0})})
    replica = start_ingest(ingest_settings, client_id="announce", engine=engine, bus=bus, status_port=0)
    client = publisher(broker.host, broker.port)
    try:
        for i in range(40):
            client.publish(*message("telemetry", "gas", "G-1", {"id": f"t{i}", "metrics": {"gas_lel": 1.0}}),
                           qos=1).wait_for_publish(10)
        _wait(lambda: replica.service.counters.written >= 40, 20, "the telemetry written")
        time.sleep(1.5)  # more than one interval: a telemetry-only stream announces nothing
        assert list(bus.signals) == []
        for wave in range(3):
            for i in range(100):
                client.publish(*_access(wave * 100 + i)[:2], qos=1).wait_for_publish(10)
        _wait(lambda: sum(s.payload["records"] for s in bus.signals) >= 300, 20, "every record announced")
    finally:
        client.disconnect()
        client.loop_stop()
        replica.stop()
    signals = list(bus.signals)
    assert sum(s.payload["records"] for s in signals) == 300 == replica.service.counters.records
    assert {(s.name, s.resource_id) for s in signals} == {(PENDING_EVENT, OUTBOX_RESOURCE)}
    assert len(signals) < replica.service.counters.batches  # coalesced: fewer events than written batches


def test_the_endpoint_block_registers_its_fields_with_the_secret_kept_secret(prefect_server: None) -> None:
    from prefect.client.orchestration import get_client

    from blocks.datahub import DatahubEndpoint

    DatahubEndpoint(url="http://127.0.0.1:9/hub", auth_value="Bearer s3cret",
                    field_policy={"credential_ref": "mask", "plate": "mask"}).save("schema-hub", overwrite=True)

    async def read() -> tuple[dict[str, object], list[str], dict[str, object]]:
        async with get_client() as client:
            block_type = await client.read_block_type_by_slug("linli-datahub-endpoint")
            schema = await client.get_most_recent_block_schema_for_block_type(block_type.id)
            document = await client.read_block_document_by_name("schema-hub", "linli-datahub-endpoint",
                                                                include_secrets=False)
            assert schema is not None
            return schema.fields, list(schema.fields.get("secret_fields", [])), document.data

    fields, secrets, data = asyncio.run(read())
    assert set(fields["properties"]) == set(EndpointFields.model_fields)  # type: ignore[arg-type]
    assert secrets == ["auth_value"]
    assert data["auth_value"] != "Bearer s3cret" and "s3cret" not in str(data)  # the API shows it obfuscated
    loaded = DatahubEndpoint.load("schema-hub").config("schema-hub")  # type: ignore[union-attr]
    assert loaded.auth_value.get_secret_value() == "Bearer s3cret" and loaded.url == "http://127.0.0.1:9/hub"
    assert "s3cret" not in repr(loaded) and "s3cret" not in loaded.model_dump_json()


class _FreshClientBus(RecordingBus):
    """Signals to this module's test server through a fresh events client (see tests.conftest.send_event)."""

    def signal(self, event: SignalOut) -> None:
        from tests.conftest import send_event

        super().signal(event)
        send_event(event.name, {"prefect.resource.id": event.resource_id}, event.payload)


def test_a_pending_event_starts_the_datahub_push_deployment_which_delivers_masked_records(
        prefect_server: None, settings: Settings, engine: Engine, session: Session) -> None:
    from blocks.datahub import DatahubEndpoint
    from flows.dag_runner import run_dag
    from flows.deployments import dag_deployment
    from flows.worker import WarmWorker
    from linli.dag.registry import load_task_modules
    from linli.dag.validate import load_text
    from tests.test_worker import Running, _deployment_id, _runs, _wait_final

    registry = load_task_modules(settings.dag.task_modules)
    text = (REPO_ROOT / "flows" / "dags" / "datahub-push.yaml").read_text(encoding="utf-8")
    definition = load_text(text, source="datahub-push", registry=registry)
    deployment = dag_deployment(definition)
    (trigger,) = deployment.triggers
    assert trigger.expect == {PENDING_EVENT} and deployment.schedules  # on the event and on its schedule
    devices(session, ("A-1", "access_gate"))
    _only_endpoint_blocks("event-hub")
    written = [0]
    bus = _FreshClientBus()
    announcer = PendingAnnouncer(lambda: written[0], bus.signal, interval=2)

    def delivered() -> set[str]:
        return {r["idempotency_key"] for m in receiver.messages for r in m["json"]["records"]}

    with NotificationReceiver() as receiver:
        DatahubEndpoint(url=f"{receiver.url}/hub").save("event-hub", overwrite=True)
        with Running(WarmWorker([(deployment, run_dag)], poll_seconds=0.5)):
            target = _deployment_id("datahub-push")
            written[0] += BatchWriter(engine).write([_access(i) for i in range(6)]).records
            # The server loads a new automation on a refresh interval; until it has, an event starts
            # nothing, so ingest's announcer goes on announcing (as it does while records keep coming).
            deadline = time.monotonic() + 90
            while not receiver.messages and time.monotonic() < deadline:
                written[0] += BatchWriter(engine).write([_access(100 + len(bus.signals))]).records
                announcer.tick()
                time.sleep(2)
            # what was written before the last announcement arrives with that announcement's run
            _wait(lambda: len(delivered()) >= written[0], 60, "every announced record delivered")
            started = [r for r in _runs(target) if r.name.endswith("← linli.datahub.pending")]
            finals = _wait_final([r.id for r in started])
    assert started, "no run was started by the pending events"
    assert all(r.state is not None and r.state.is_completed() for r in finals.values())
    records = [r for m in receiver.messages for r in m["json"]["records"]]
    keys = [r["idempotency_key"] for r in records]
    assert len(keys) == len(set(keys)) == written[0]  # every record, once, though several runs started
    assert all(r["credential_ref"] == "340*************34" for r in records)
    assert ID_NUMBER not in "".join(m["body"] for m in receiver.messages)


def _only_endpoint_blocks(keep: str) -> None:
    """Delete the endpoint blocks other tests of this module saved: a run pushes every endpoint."""
    from prefect.client.orchestration import get_client

    from blocks.datahub import DatahubEndpoint

    async def prune() -> None:
        await DatahubEndpoint.aregister_type_and_schema()  # a fresh server knows no such type yet
        async with get_client() as client:
            for document in await client.read_block_documents_by_type("linli-datahub-endpoint"):
                if document.name != keep:
                    await client.delete_block_document(document.id)

    asyncio.run(prune())


def test_two_datahub_push_runs_at_once_send_each_record_once(
        prefect_server: None, settings: Settings, engine: Engine, session: Session) -> None:
    from blocks.datahub import DatahubEndpoint
    from flows.dag_runner import run_dag

    devices(session, ("A-1", "access_gate"))
    _only_endpoint_blocks("twice-hub")
    BatchWriter(engine).write([_access(i) for i in range(40)])
    with NotificationReceiver() as receiver:
        receiver.on_message = lambda _m: time.sleep(0.05)
        DatahubEndpoint(url=f"{receiver.url}/hub", batch_size=4).save("twice-hub", overwrite=True)
        params = {"endpoints": ["twice-hub"], "deadline_seconds": 30}

        async def both() -> list[object]:
            return list(await asyncio.gather(run_dag(dag="datahub-push", params=params),
                                             run_dag(dag="datahub-push", params=params)))

        results = asyncio.run(both())
    assert results == [{"push": "completed", "alert": "skipped"}] * 2
    keys = [r["idempotency_key"] for m in receiver.messages for r in m["json"]["records"]]
    assert len(keys) == 40 and len(set(keys)) == 40



def test_the_endpoint_command_saves_a_block_and_refuses_a_policy_it_cannot_apply(
        prefect_server: None, settings: Settings) -> None:
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    from blocks.datahub import DatahubEndpoint

    env = {**os.environ, "LINLI_PREFECT__API_URL": str(PREFECT_API_URL.value()), "LINLI_LANGUAGE": "en",
           "COLUMNS": "200"}
    command = [sys.executable, "-m", "linli.cli", "datahub", "endpoint"]
    saved = subprocess.run([*command, "cli-hub", "--url", "http://127.0.0.1:9/hub", "--mask", "credential_ref",
                            "--drop", "direction"], env=env, capture_output=True, text=True, timeout=120)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    block = DatahubEndpoint.load("cli-hub")
    assert block.field_policy == {"credential_ref": "mask", "direction": "drop"}  # type: ignore[union-attr]
    refused = subprocess.run([*command, "bad-hub", "--url", "http://127.0.0.1:9/hub", "--mask", "direction"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "no masking rule for direction" in refused.stdout + refused.stderr
    with pytest.raises(ValueError):
        DatahubEndpoint.load("bad-hub")
