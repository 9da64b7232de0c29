"""Fuzzing ingest's write path with hypothesis: 10,000 generated MQTT messages, none of which may crash it.

Each generated batch goes through `BatchWriter.write` — what the ingest replica's writer thread calls
for every batch it takes off the queue. The messages are random bytes, random JSON, near-valid
payloads of every device type (a field dropped, a value of the wrong type, huge or non-finite
numbers, unicode, extra fields), oversized payloads and strange topics. For every batch:

- no exception escapes (a database error would make ingest retry the batch for ever);
- every message is accounted for: stored (a telemetry or event row with its message key, or a
  heartbeat / command answer) or a dead-letter row with a reason and a detail;
- the valid ones are stored.

A sample then takes the real route — broker, shared subscription, ingest replica — and is
accounted for the same way.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli.devices.ingest import IngestOptions, IngestService
from linli.devices.protocol import Kind, topic
from linli.devices.simulator import Generator, SimDevice, equip, publisher
from linli.devices.writer import BatchWriter, Incoming
from linli.models import AccessRecord, DeadLetter, DeviceEvent, OutboxRecord, Telemetry
from tests.conftest import BACKENDS
from tests.device_factories import devices, message
from tests.mqtt_broker import mosquitto_path, run_broker

# PostgreSQL only: what these tests look for (NUL refused, connections cut) is PostgreSQL's behaviour.
ON_POSTGRES = pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.skipif(
    "postgresql" not in BACKENDS, reason="needs PostgreSQL at 127.0.0.1:5432 (python -m tests.services)"))],
    indirect=True)

BATCHES = 250
PER_BATCH = 40  # 250 × 40 = 10,000 messages
MAX_PAYLOAD = 4096  # a small limit (the setting's floor is 1 KiB) so oversized payloads stay cheap

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20)
_odd_values = st.one_of(
    _json,
    st.integers(min_value=10**18, max_value=10**60), st.integers(max_value=-(10**18)),
    st.sampled_from([1e308, -1e308, 5e-324, "NaN", "Infinity", "", "０", "🔥" * 50, "\u0000", "ts",
                     "2026-13-45T99:99:99Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
_raw_numbers = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 400, "0." + "0" * 400 + "1"])


def _valid(generator: Generator, device: SimDevice, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A valid message of `device` as (topic, body): ordinary uplink or an alarm."""
    if rng.random() < 0.2 and device.device_type in ("gas", "smoke", "sos_button", "fall_radar", "fire_host"):
        name, payload = generator.alarm(device)
    else:
        name, payload = generator.uplink(device)
    return name, json.loads(payload)


@st.composite
def messages(draw: st.DrawFn, fleet: list[SimDevice]) -> tuple[str, bytes]:
    """One fuzzed (topic, payload)."""
    device = draw(st.sampled_from(fleet))
    seed = draw(st.integers(0, 2**32))
    # A generator of its own, seeded by hypothesis: the same draws give the same message.
    rng = random.Random(seed)
    name, body = _valid(Generator(fleet, rng=random.Random(seed), run="fz"), device, rng)
    # Each message gets a fresh id, so a stored one can be found again by it.
    body["id"] = f"fz-{draw(st.integers(0, 2**62))}"
    how = draw(st.sampled_from(["valid", "bytes", "json", "drop", "retype", "extra", "huge", "raw_number",
                                "unicode", "oversized", "topic", "kind", "device"]))
    if how == "valid":
        return name, json.dumps(body, ensure_ascii=False).encode()
    if how == "bytes":
        return name, draw(st.binary(max_size=300))
    if how == "json":
        return name, json.dumps(draw(_json)).encode()
    if how == "drop" and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif how == "retype":
        body[draw(st.sampled_from(sorted(body)))] = draw(_odd_values)
        if "metrics" in body and isinstance(body["metrics"], dict) and body["metrics"] and draw(st.booleans()):
            body["metrics"][draw(st.sampled_from(sorted(body["metrics"])))] = draw(_odd_values)
    elif how == "extra":
        body[draw(st.text(min_size=1, max_size=12))] = draw(_odd_values)
    elif how == "huge":
        target = body["metrics"] if isinstance(body.get("metrics"), dict) and body["metrics"] else body
        target[draw(st.sampled_from(sorted(target)))] = draw(st.sampled_from([10**30, -(10**30), 1e308, 10**400]))
    elif how == "raw_number":  # not valid JSON for Python's encoder, but bytes a device can send
        target = "metrics" if isinstance(body.get("metrics"), dict) and body["metrics"] else None
        text_body = json.dumps(body, ensure_ascii=False)
        value = draw(_raw_numbers)
        if target:
            metric = sorted(body["metrics"])[0]
            text_body = text_body.replace(f'"{metric}": {json.dumps(body["metrics"][metric])}', f'"{metric}": {value}')
        else:
            text_body = text_body.replace(f'"ts": {json.dumps(body["ts"])}', f'"ts": {value}')
        return name, text_body.encode()
    elif how == "unicode":
        key = draw(st.sampled_from(sorted(body)))
        body[key] = draw(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=80))
    elif how == "oversized":
        body["padding"] = "x" * draw(st.integers(MAX_PAYLOAD, MAX_PAYLOAD * 3))
    elif how == "topic":
        name = draw(st.one_of(st.text(max_size=80), st.just(name.rsplit("/", 1)[0]), st.just(name + "/more"),
                              st.just(name.replace("linli/", "other/"))))
    elif how == "kind":
        name = name.rsplit("/", 1)[0] + "/" + draw(st.sampled_from([k.value for k in Kind] + ["gossip", ""]))
    elif how == "device":
        name = topic(device.community, device.device_type, draw(st.text(min_size=1, max_size=20).filter(
            lambda s: "/" not in s and "+" not in s and "#" not in s)), "telemetry")
    return name, json.dumps(body, ensure_ascii=False, default=str).encode()


def _count(engine: Engine, model: Any) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def _stored(engine: Engine, keys: list[str]) -> set[str]:
    found: set[str] = set()
    with Session(engine) as session:
        for model in (Telemetry, DeviceEvent):
            column = model.msg_key  # type: ignore[attr-defined]
            found |= set(session.execute(select(column).where(column.in_(keys))).scalars())
    return found


def _msg_id(payload: bytes) -> str | None:
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    value = body.get("id") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def draw_many(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` values drawn by hypothesis (deterministically) from a strategy."""
    drawn: list[Any] = []

    @settings(max_examples=count, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


@pytest.fixture
def fuzz_fleet(session: Session) -> list[SimDevice]:
    fleet = equip(session, buildings=1)
    session.commit()
    return fleet


@ON_POSTGRES
def test_ten_thousand_fuzzed_messages_never_crash_ingest(engine: Engine, fuzz_fleet: list[SimDevice]) -> None:
    writer = BatchWriter(engine, max_payload=MAX_PAYLOAD)
    total = {"messages": 0, "stored": 0, "dead": 0}

    @settings(max_examples=BATCHES, deadline=None, derandomize=True, database=None, report_multiple_bugs=False,
              phases=[Phase.explicit, Phase.generate],  # shrinking a batch of 40 against a database takes minutes
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(st.lists(st.tuples(messages(fuzz_fleet), st.booleans()),
                    min_size=PER_BATCH, max_size=PER_BATCH))
    def run(batch: list[tuple[tuple[str, bytes], bool]]) -> None:
        incoming = [Incoming(name, payload) for (name, payload), _ in batch]
        result = writer.write(incoming)  # must not raise
        assert result.accepted + result.dead_letters == len(incoming), "a message neither stored nor dead-lettered"
        assert result.dead_letters == sum(result.reasons.values())
        total["messages"] += len(incoming)
        total["dead"] += result.dead_letters
        total["stored"] += result.accepted

    run()
    assert total["messages"] >= BATCHES * PER_BATCH
    assert total["dead"] > 0 and total["stored"] > 0  # both kinds were generated
    # Every rejection is a row, with its reason and a detail that says what is wrong.
    with Session(engine) as session:
        rows = session.execute(select(DeadLetter.reason, DeadLetter.detail)).all()  # type: ignore[call-overload]
    assert len(rows) == total["dead"]
    assert all(reason and detail for reason, detail in rows), "a dead letter without a reason"


@ON_POSTGRES
def test_every_valid_message_among_fuzz_is_stored(engine: Engine, fuzz_fleet: list[SimDevice]) -> None:
    # Valid telemetry/event messages mixed with fuzz in the same batch are each stored, once.
    writer = BatchWriter(engine, max_payload=MAX_PAYLOAD)
    generator = Generator(fuzz_fleet, rng=random.Random(11))
    rng = random.Random(3)
    fuzz = iter(draw_many(messages(fuzz_fleet), 600))
    valid: list[str] = []
    batch: list[Incoming] = []
    for n in range(600):
        device = fuzz_fleet[n % len(fuzz_fleet)]
        name, body = _valid(generator, device, rng)
        if name.endswith(("/telemetry", "/event")):
            body["id"] = f"ok-{n}"
            valid.append(body["id"])
            batch.append(Incoming(name, json.dumps(body, ensure_ascii=False).encode()))
        batch.append(Incoming(*next(fuzz)))
    rng.shuffle(batch)
    writer.write(batch)
    assert _stored(engine, valid) == set(valid)
    with Session(engine) as session:  # once each
        stored = sum(session.execute(select(func.count()).select_from(model).where(
            model.msg_key.like("ok-%"))).scalar_one() for model in (Telemetry, DeviceEvent))  # type: ignore[attr-defined]
    assert stored == len(valid)


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed (python -m tests.services)")
@ON_POSTGRES
def test_a_fuzz_sample_through_the_broker_is_accounted_for(engine: Engine, fuzz_fleet: list[SimDevice]) -> None:

    sample = []
    for name, payload in draw_many(messages(fuzz_fleet), 600):
        # Only what a broker delivers to `linli/+/+/+/+`: a topic it accepts (Mosquitto disconnects a client
        # that publishes control characters) and ingest subscribes to.
        if name.startswith("linli/") and name.count("/") == 4 and not any(c in name for c in "+#") \
                and name.isprintable() \
                and all(name.split("/")) and len(name.encode()) < 65535:
            sample.append((name, payload))
    assert len(sample) > 200
    writer = BatchWriter(engine, max_payload=MAX_PAYLOAD)
    with tempfile.TemporaryDirectory() as folder, run_broker(Path(folder)) as broker:
        service = IngestService(writer, IngestOptions(host=broker.host, port=broker.port, batch_wait=0.02))
        service.start()
        try:
            client = publisher(broker.host, broker.port)
            for name, payload in sample:
                client.publish(name, payload, qos=1).wait_for_publish(10)
            client.disconnect()
            client.loop_stop()
            deadline = time.monotonic() + 30
            c = service.counters
            while c.written + c.duplicates + c.dead_lettered < len(sample) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            service.stop()
    c = service.counters
    assert c.received == len(sample)
    dead = _count(engine, DeadLetter)
    assert c.dead_lettered == dead > 0
    # Every message: written (incl. heartbeats), a duplicate of an earlier one, or a dead letter.
    assert c.written + c.duplicates + c.dead_lettered == len(sample)
    assert not math.isnan(c.lag_seconds)


# --- what the fuzz found, pinned down ------------------------------------------------------------


@ON_POSTGRES
def test_the_same_access_message_twice_in_one_batch_is_one_record_and_one_outbox_row(engine: Engine,
                                                                                      session: Session) -> None:
    # A QoS 1 redelivery can land in the batch that holds the first copy; both outbox rows had one key.
    devices(session, ("A-1", "access_gate"))
    access = message("event", "access_gate", "A-1", {"id": "a1", "event": "access", "method": "card",
                                                      "credential_ref": "CARD-00001", "direction": "in"})
    result = BatchWriter(engine).write([Incoming(*access), Incoming(*access)])
    assert (result.written, result.duplicates, result.records) == (1, 1, 1)
    assert _count(engine, AccessRecord) == 1 and _count(engine, OutboxRecord) == 1


@ON_POSTGRES
def test_nul_in_a_payload_or_topic_is_a_dead_letter_not_a_failed_batch(engine: Engine, session: Session) -> None:
    # PostgreSQL refuses NUL in text and jsonb: the whole batch failed with it.
    devices(session, ("A-1", "access_gate"), ("G-1", "gas"))
    nul_payload = message("event", "access_gate", "A-1", {"id": "a2", "event": "access", "method": "card",
                                                           "credential_ref": "CARD\u000000001", "direction": "in"})
    good = message("telemetry", "gas", "G-1", {"id": "g1", "metrics": {"gas_lel": 1.0}})
    batch = [Incoming(*nul_payload), Incoming("linli/XFL/gas/G\x00-1/telemetry", good[1]), Incoming(*good)]
    result = BatchWriter(engine).write(batch)
    assert result.written == 1 and result.dead_letters == 2 and result.reasons["schema"] == 1
    with Session(engine) as s:
        rows = s.execute(select(DeadLetter.reason, DeadLetter.detail, DeadLetter.topic)).all()  # type: ignore[call-overload]
    assert len(rows) == 2 and all(reason and detail for reason, detail, _ in rows)
    assert any("NUL" in detail for _, detail, _ in rows)
    assert any("\ufffd" in topic for _, _, topic in rows)
