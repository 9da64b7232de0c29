"""Data-hub pushes to a real HTTP receiver: outages retried, nothing lost or doubled (also with two pushes at
once), fields masked or dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli.datahub import (
    EndpointConfig,
    PushResult,
    _claim,
    lease_seconds,
    push_batch,
    push_until_caught_up,
    replay_parked,
    status,
)
from linli.devices.writer import BatchWriter, Incoming
from linli.errors import ConfigurationError
from linli.models import EndpointCursor, Notification, ParkedRecord, utcnow
from linli.receiver import Message, NotificationReceiver
from linli.settings import REPO_ROOT
from tests.device_factories import devices, message

ID_NUMBER = "340104199001011234"


def _records(engine: Engine, session: Session, count: int) -> None:
    devices(session, ("A-1", "access_gate"), ("V-1", "vehicle_barrier"))
    batch = []
    for i in range(count):
        if i % 2:
            batch.append(Incoming(*message("event", "vehicle_barrier", "V-1",
                                           {"id": f"v{i}", "event": "vehicle", "plate": "皖A12345"})))
        else:
            batch.append(Incoming(*message("event", "access_gate", "A-1",
                                           {"id": f"a{i}", "event": "access", "method": "id_card",
                                            "credential_ref": ID_NUMBER})))
    BatchWriter(engine).write(batch)


@pytest.fixture
def receiver() -> Iterator[NotificationReceiver]:
    """A real HTTP receiver; each arrival is tagged with the status it was answered with."""
    rx = NotificationReceiver()

    def tag(message: Message) -> None:
        message["answered"] = rx.status_code

    rx.on_message = tag
    with rx:
        yield rx


def _endpoint(receiver: NotificationReceiver, **overrides: object) -> EndpointConfig:
    values: dict[str, object] = {"name": "city-hub", "url": f"{receiver.url}/push", "batch_size": 7,
                                 "backoff_seconds": 0.05, "max_attempts": 50, "auth_value": "Bearer s3cret"}
    values.update(overrides)
    return EndpointConfig.model_validate(values)


def test_a_receiver_failing_for_a_while_gets_every_record_exactly_once(
        engine: Engine, session: Session, receiver: NotificationReceiver) -> None:
    _records(engine, session, 40)
    receiver.status_code = 500
    threading.Timer(0.8, lambda: setattr(receiver, "status_code", 200)).start()
    with httpx.Client() as client:
        results = push_until_caught_up(engine, _endpoint(receiver), client=client, deadline_seconds=30)
    assert results[-1].caught_up and any(r.failed for r in results)
    accepted = [r for m in receiver.messages if m["answered"] == 200 for r in m["json"]["records"]]
    keys = [r["idempotency_key"] for r in accepted]
    assert len(keys) == 40 and len(set(keys)) == 40  # every record, once
    assert all(m["headers"]["Authorization"] == "Bearer s3cret" for m in receiver.messages)
    assert len({m["headers"]["Idempotency-Key"] for m in receiver.messages if m["answered"] == 200}) == 6
    row = status(session)[0]
    assert (row["status"], row["delivered"], row["behind"], row["parked"]) == ("ok", 40, 0, 0)


def test_personal_fields_are_masked_or_dropped_by_the_field_policy(
        engine: Engine, session: Session, receiver: NotificationReceiver) -> None:
    _records(engine, session, 4)
    template = '{"items": [{% for r in records %}{"k": {{ r.idempotency_key | tojson }}, "r": {{ r | tojson }}}' \
               '{% if not loop.last %},{% endif %}{% endfor %}]}'
    endpoint = _endpoint(receiver, batch_size=100, payload_template=template,
                         field_policy={"credential_ref": "mask", "plate": "mask", "direction": "drop"})
    with httpx.Client() as client:
        assert push_batch(engine, endpoint, client=client).sent == 4
    items = [item["r"] for item in receiver.messages[0]["json"]["items"]]
    access = [r for r in items if r["kind"] == "access"]
    vehicle = [r for r in items if r["kind"] == "vehicle"]
    assert access[0]["credential_ref"] == "340*************34" and ID_NUMBER not in receiver.messages[0]["body"]
    assert vehicle[0]["plate"] == "皖A***45" and "皖A12345" not in receiver.messages[0]["body"]
    assert all("direction" not in r for r in items)
    # keeping is a choice the admin makes explicitly (say, for the public-security platform)
    with httpx.Client() as client:
        open_endpoint = _endpoint(receiver, name="police", batch_size=100, field_policy={})
        push_batch(engine, open_endpoint, client=client)
    assert ID_NUMBER in receiver.messages[-1]["body"]


def test_a_batch_that_keeps_failing_is_parked_staff_alerted_and_replayable(
        engine: Engine, session: Session, receiver: NotificationReceiver) -> None:
    _records(engine, session, 10)
    receiver.status_code = 503
    endpoint = _endpoint(receiver, batch_size=5, max_attempts=3, backoff_seconds=0.01)
    with httpx.Client() as client:
        results = push_until_caught_up(engine, endpoint, client=client, deadline_seconds=30,
                                       templates_dir=REPO_ROOT / "templates")
    assert sum(r.parked for r in results) == 10 and results[-1].caught_up  # the outbox is not blocked
    assert session.execute(select(func.count()).select_from(ParkedRecord)).scalar_one() == 10
    alerts = session.execute(select(Notification).where(Notification.kind == "datahub_parked")).scalars().all()
    assert alerts and "city-hub" in alerts[0].title
    receiver.status_code = 200
    replay_parked(session, "city-hub")
    session.commit()
    with httpx.Client() as client:
        push_until_caught_up(engine, endpoint, client=client, deadline_seconds=30)
    delivered = {r["idempotency_key"] for m in receiver.messages if m["answered"] == 200 for r in m["json"]["records"]}
    assert len(delivered) == 10
    cursor = session.execute(select(EndpointCursor)).scalar_one()
    session.refresh(cursor)
    assert cursor.parked == 0 and cursor.status == "ok"


def test_a_template_that_is_not_json_is_a_clear_error(engine: Engine, session: Session,
                                                      receiver: NotificationReceiver) -> None:
    _records(engine, session, 2)
    with httpx.Client() as client, pytest.raises(ConfigurationError, match="does not give JSON"):
        push_batch(engine, _endpoint(receiver, payload_template="records: {{ records }}"), client=client)
    assert receiver.messages == []


def test_two_pushes_of_one_endpoint_at_once_send_each_batch_once(
        engine: Engine, session: Session, receiver: NotificationReceiver) -> None:
    """Two flow runs (schedule and event) may push one endpoint at the same time: no batch goes twice."""
    _records(engine, session, 60)
    receiver.on_message = lambda _m: time.sleep(0.05)  # a receiver that takes its time: the pushes overlap
    endpoint = _endpoint(receiver, batch_size=5)
    outcomes: list[list[PushResult]] = []

    def push() -> None:
        with httpx.Client() as client:
            outcomes.append(push_until_caught_up(engine, endpoint, client=client, deadline_seconds=60))

    threads = [threading.Thread(target=push) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    keys = [r["idempotency_key"] for m in receiver.messages for r in m["json"]["records"]]
    assert len(keys) == 60 and len(set(keys)) == 60, "a batch went twice (or one was lost)"
    assert len(outcomes) == 2 and all(runs[-1].caught_up for runs in outcomes)
    assert any(r.waiting for runs in outcomes for r in runs), "the two pushes never overlapped"
    row = status(session)[0]
    assert (row["delivered"], row["behind"], row["status"]) == (60, 0, "ok")


def test_a_push_that_died_holding_its_endpoint_frees_it_after_the_lease(
        engine: Engine, session: Session, receiver: NotificationReceiver) -> None:
    _records(engine, session, 4)
    endpoint = _endpoint(receiver, timeout_seconds=1)
    start = utcnow()
    claim = _claim(engine, endpoint, start)  # taken, as by a run that then crashed
    assert claim is not None and _claim(engine, endpoint, start) is None  # a second push must wait
    with httpx.Client() as client:
        assert push_batch(engine, endpoint, client=client, now=start + timedelta(seconds=1)).waiting
        later = start + timedelta(seconds=lease_seconds(endpoint) + 1)
        assert push_batch(engine, endpoint, client=client, now=later).sent == 4
    assert len(receiver.messages) == 1
