"""Writes one batch of MQTT messages in one transaction: the heart of ingest, without the MQTT part.

Each message is checked (topic, size, JSON, schema, known device of the right type); the good
ones become rows (telemetry, events, access and vehicle records with their data-hub outbox rows,
heartbeats as device updates, command answers), the bad ones dead letters with the raw bytes and
the reason. Inserts are "insert, ignore on conflict" on (device, message key, time) for PostgreSQL and
SQLite alike, so a redelivered message writes nothing twice — and its alarms fire only once.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, Table, bindparam, case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from linli.devices import protocol
from linli.devices.alarms import NewAlarm, RuleEvaluator, Trigger, raise_alarms
from linli.devices.protocol import Kind, Rejected, Topic, pg_text
from linli.devices.registry import DEVICE_TYPES, RuleBook
from linli.models import (
    AccessRecord,
    Community,
    DeadLetter,
    Device,
    DeviceCommand,
    DeviceEvent,
    DeviceState,
    OutboxRecord,
    Telemetry,
    VehicleRecord,
    utcnow,
)
from linli.storage import ObjectStore

log = logging.getLogger(__name__)


class Incoming(NamedTuple):
    """One message as the MQTT client handed it over (a tuple: made 10,000s of times a second)."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1
    received: float = 0.0  # time.time() at arrival
    generation: int = 0  # which connection it came on: its mid is only valid there


@dataclass(frozen=True)
class DeviceInfo:
    """What ingest needs to know about a device, cached."""

    id: int
    code: str
    device_type: str
    community: str


@dataclass
class BatchResult:
    """What one batch did."""

    accepted: int = 0
    written: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    new_alarms: list[NewAlarm] = field(default_factory=list)
    records: int = 0


class DeviceDirectory:
    """Device code → DeviceInfo, reloaded from the database when an unknown code shows up (at most 1/s)."""

    def __init__(self, engine: Engine, *, reload_every: float = 1.0) -> None:
        self.engine = engine
        self.reload_every = reload_every
        self._devices: dict[str, DeviceInfo] = {}
        self._loaded = 0.0

    def reload(self) -> None:
        """Read every device."""
        d, c = Device.__table__.c, Community.__table__.c  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(select(d.id, d.code, d.device_type, c.code).join_from(
                Device.__table__, Community.__table__, d.community_id == c.id)).all()  # type: ignore[attr-defined]
        self._devices = {row[1]: DeviceInfo(row[0], row[1], row[2], row[3]) for row in rows}
        self._loaded = time.monotonic()

    def get(self, code: str) -> DeviceInfo | None:
        """The device with this code, if registered."""
        info = self._devices.get(code)
        if info is None and time.monotonic() - self._loaded >= self.reload_every:
            self.reload()
            info = self._devices.get(code)
        return info


# PostgreSQL: one INSERT … SELECT FROM json_to_recordset(:rows) per table and batch. The batch goes
# over as ONE JSON text made by the C json encoder; the statement text never changes, so it is
# prepared once. (A multi-row VALUES list cost ~3× more to build; arrays per column ~2× more to dump.)
PG_TYPES: dict[str, str] = {"device_id": "int", "msg_key": "text", "ts": "timestamptz", "received_at": "timestamptz",
                            "metrics": "json", "data": "json", "event": "text", "snapshot_key": "text",
                            "method": "text", "credential_ref": "text", "direction": "text", "granted": "bool",
                            "plate": "text", "kind": "text", "record_id": "int", "payload": "json",
                            "created_at": "timestamptz", "idempotency_key": "text"}
TIME_COLUMNS = ("ts", "received_at", "created_at")


class PgJsonInsert:
    """INSERT INTO t (cols) SELECT cols FROM json_to_recordset(rows) [ON CONFLICT … DO NOTHING RETURNING …]."""

    def __init__(self, table_name: str, columns: list[str], *, idempotent: bool = True) -> None:
        self.columns = columns
        names = ", ".join(columns)
        record = ", ".join(f"{c} {PG_TYPES[c]}" for c in columns)
        tail = " ON CONFLICT (device_id, msg_key, ts) DO NOTHING RETURNING device_id, msg_key, id" if idempotent else ""
        self.statement = text(f'INSERT INTO "{table_name}" ({names}) SELECT {names} '
                              f"FROM json_to_recordset(CAST(:rows AS json)) AS x({record}){tail}")
        self.idempotent = idempotent

    def run(self, conn: Any, rows: list[dict[str, Any]]) -> list[Any]:
        """Insert the rows; returns (device_id, msg_key, id) of those that were new (idempotent inserts)."""
        times = [c for c in self.columns if c in TIME_COLUMNS]
        shaped = [{**r, **{c: r[c].isoformat() for c in times}} for r in rows] if times else rows
        result = conn.execute(self.statement, {"rows": json.dumps(shaped, ensure_ascii=False)})
        return list(result.all()) if self.idempotent else []


OUTBOX_PG = PgJsonInsert("datahub_outbox", ["kind", "record_id", "payload", "created_at", "idempotency_key"],
                         idempotent=False)


def _record_key(kind: str, device_code: str, msg_key: str, ts: datetime) -> str:
    """A record's idempotency key for the data hub: device, message id and time (a ts key holds its time)."""
    if msg_key.startswith("ts:"):
        return f"{kind}:{device_code}:{msg_key}"
    return f"{kind}:{device_code}:{msg_key}@{ts.timestamp():.6f}"


def _urgent_lanes(rules: RuleBook) -> set[tuple[str, str]]:
    """(device type, message kind) pairs that can raise a life-safety or notify-at-once alarm."""
    lanes = set()
    for rule in rules.rules:
        if rule.life_safety or rule.notify:
            lanes.add((rule.device_type, "event" if rule.kind == "event" else "telemetry"))
    return lanes


def _insert(engine: Engine, table: Any) -> Insert:
    """INSERT … ON CONFLICT (device_id, msg_key, ts) DO NOTHING RETURNING device_id, msg_key, id.

    `ts` is in the key because PostgreSQL partitions these tables by month of `ts` (a partitioned
    table's unique keys must hold its partition key); a redelivery has the same key and time."""
    tbl: Table = table.__table__
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    if engine.dialect.name not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"ingest supports PostgreSQL and SQLite, not {engine.dialect.name}")
    return (dialect.insert(tbl).on_conflict_do_nothing(index_elements=["device_id", "msg_key", "ts"])  # type: ignore[attr-defined]
            .returning(tbl.c.device_id, tbl.c.msg_key, tbl.c.id))


class BatchWriter:
    """Validates and writes batches of messages; keeps alarm-rule state between batches."""

    def __init__(self, engine: Engine, *, rules: RuleBook | None = None, store: ObjectStore | None = None,
                 max_payload: int = protocol.MAX_PAYLOAD_BYTES) -> None:
        self.engine = engine
        self.devices = DeviceDirectory(engine)
        self.set_rules(rules or RuleBook())
        self.store = store
        self.max_payload = max_payload
        self._inserts = {model: _insert(engine, model) for model in (Telemetry, DeviceEvent, AccessRecord,
                                                                       VehicleRecord)}
        self._topics: dict[str, Topic] = {}
        self._pg: dict[Any, PgJsonInsert] = {}
        if engine.dialect.name == "postgresql":
            columns = {Telemetry: ["device_id", "msg_key", "ts", "received_at", "metrics"],
                       DeviceEvent: ["device_id", "msg_key", "ts", "received_at", "event", "data", "snapshot_key"],
                       AccessRecord: ["device_id", "msg_key", "ts", "method", "credential_ref", "direction",
                                      "granted"],
                       VehicleRecord: ["device_id", "msg_key", "ts", "plate", "direction", "granted"]}
            self._pg = {model: PgJsonInsert(model.__tablename__, cols) for model, cols in columns.items()}

    def set_rules(self, rules: RuleBook) -> None:
        """Use new alarm rules from the next batch on."""
        self.evaluator = RuleEvaluator(rules)
        self._urgent = _urgent_lanes(rules)
        self._urgent_topics: dict[str, bool] = {}

    def urgent(self, topic_name: str) -> bool:
        """Whether a message on this topic may raise a life-safety alarm (it then skips the queue)."""
        known = self._urgent_topics.get(topic_name)
        if known is None:
            parts = topic_name.split("/")
            known = len(parts) == 5 and (parts[2], parts[4]) in self._urgent
            if len(self._urgent_topics) < 100_000:
                self._urgent_topics[topic_name] = known
        return known

    def _check(self, message: Incoming) -> tuple[Topic, DeviceInfo, protocol.Uplink]:
        parsed = self._topics.get(message.topic)
        if parsed is None:
            parsed = protocol.parse_topic(message.topic)
            if len(self._topics) < 100_000:  # topics repeat per device; bounded against topic floods
                self._topics[message.topic] = parsed
        if parsed.kind is Kind.cmd:
            raise Rejected("bad_topic", "cmd is a downlink topic; devices publish on telemetry, event, "
                                        "heartbeat or cmd_ack")
        if len(message.payload) > self.max_payload:
            raise Rejected("oversized", f"payload of {len(message.payload)} bytes is over the "
                                        f"{self.max_payload}-byte limit")
        device = self.devices.get(parsed.device_id)
        if device is None:
            raise Rejected("unknown_device", f"no registered device {parsed.device_id!r}; "
                                             "import it with `linli devices import`")
        if device.device_type != parsed.device_type:
            raise Rejected("wrong_type", f"device {device.code} is a {device.device_type}, "
                                         f"not a {parsed.device_type}")
        return parsed, device, protocol.parse_payload(parsed, message.payload, max_bytes=self.max_payload)

    def write(self, batch: list[Incoming]) -> BatchResult:
        """Write a batch in one transaction; raises only on a database failure (nothing is then written)."""
        result = BatchResult()
        rows: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        dead: list[dict[str, Any]] = []
        seen: dict[int, dict[str, Any]] = {}
        acks: list[tuple[protocol.CommandAck, int]] = []
        pending_events: dict[tuple[int, str], tuple[DeviceInfo, Any, str]] = {}
        pending_telemetry: dict[tuple[int, str], tuple[DeviceInfo, datetime, dict[str, float]]] = {}
        now = utcnow()
        for message in batch:
            try:
                parsed, device, payload = self._check(message)
            except Rejected as rejected:
                dead.append({"received_at": now, "topic": pg_text(message.topic[:300]), "reason": rejected.reason,
                             "detail": pg_text(rejected.detail[:1000]), "payload": message.payload})
                result.reasons[rejected.reason] += 1
                continue
            result.accepted += 1
            update_row = seen.setdefault(device.id, {"id": device.id, "last_seen": now, "battery": None,
                                                     "firmware": None})
            key = payload.msg_key
            if parsed.kind is Kind.heartbeat:
                assert isinstance(payload, protocol.Heartbeat)
                update_row["battery"] = payload.battery if payload.battery is not None else update_row["battery"]
                update_row["firmware"] = payload.firmware or update_row["firmware"]
                result.written += 1
            elif parsed.kind is Kind.cmd_ack:
                assert isinstance(payload, protocol.CommandAck)
                acks.append((payload, device.id))
                result.written += 1
            elif parsed.kind is Kind.telemetry:
                metrics = protocol.metrics_of(payload)  # type: ignore[arg-type]
                rows[Telemetry].append({"device_id": device.id, "msg_key": key, "ts": payload.ts,
                                        "received_at": now, "metrics": metrics})
                pending_telemetry[(device.id, key)] = (device, payload.ts, metrics)
            else:
                snapshot_key = self._event_rows(device, payload, key, now, rows)
                pending_events[(device.id, key)] = (device, payload, snapshot_key)
        with self.engine.begin() as conn:
            new_keys: dict[Any, dict[tuple[int, str], list[int]]] = {}
            for model, model_rows in rows.items():
                returned = self._run_insert(conn, model, model_rows) if model_rows else []
                # (device, key) → the new rows' ids: one message key can name two messages when the
                # device sent it with two different times (the unique key holds ts for the partitions).
                ids: dict[tuple[int, str], list[int]] = {}
                for r in returned:
                    ids.setdefault((r[0], r[1]), []).append(r[2])
                new_keys[model] = ids
                if model in (Telemetry, DeviceEvent):  # access / vehicle records ride on an event row
                    result.written += len(returned)
                    result.duplicates += len(model_rows) - len(returned)
            result.records = self._outbox(conn, rows, new_keys)
            if seen:
                self._touch(conn, [seen[i] for i in sorted(seen)])  # sorted: no deadlock between replicas
            if acks:
                self._answer(conn, acks, now)
            if dead:
                conn.execute(DeadLetter.__table__.insert(), dead)  # type: ignore[attr-defined]
            triggers = self._triggers(pending_telemetry, pending_events, new_keys)
            result.new_alarms = raise_alarms(conn, triggers) if triggers else []
        result.dead_letters = len(dead)
        return result

    def _run_insert(self, conn: Any, model: Any, rows: list[dict[str, Any]]) -> list[Any]:
        if model in self._pg:
            return self._pg[model].run(conn, rows)
        return list(conn.execute(self._inserts[model], rows).all())

    def _event_rows(self, device: DeviceInfo, payload: Any, key: str, now: datetime,
                    rows: dict[Any, list[dict[str, Any]]]) -> str:
        spec = DEVICE_TYPES[device.device_type]
        snapshot_key = ""
        if getattr(payload, "snapshot", None) and self.store is not None:
            extension = "png" if payload.content_type == "image/png" else "jpg"
            snapshot_key = f"snapshots/{device.code}/{key.replace(':', '_')}.{extension}"
            self.store.put(snapshot_key, payload.snapshot, payload.content_type)
        data = payload.model_dump(mode="json", exclude={"id", "ts", "event", "snapshot", "content_type"},
                                  exclude_none=True)
        rows[DeviceEvent].append({"device_id": device.id, "msg_key": key, "ts": payload.ts, "received_at": now,
                                  "event": payload.event, "data": data, "snapshot_key": snapshot_key})
        if spec.record == "access" and payload.event == "access":
            rows[AccessRecord].append({"device_id": device.id, "msg_key": key, "ts": payload.ts,
                                       "method": str(payload.method), "credential_ref": payload.credential_ref,
                                       "direction": payload.direction, "granted": payload.granted})
        elif spec.record == "vehicle" and payload.event == "vehicle":
            rows[VehicleRecord].append({"device_id": device.id, "msg_key": key, "ts": payload.ts,
                                        "plate": payload.plate, "direction": payload.direction,
                                        "granted": payload.granted})
        return snapshot_key

    def _outbox(self, conn: Any, rows: dict[Any, list[dict[str, Any]]],
                new_keys: dict[Any, dict[tuple[int, str], list[int]]]) -> int:
        """Outbox rows for the access and vehicle records this batch wrote, in the same transaction."""
        codes = {info.id: info for info in self.devices._devices.values()}
        outbox: list[dict[str, Any]] = []
        for model, kind in ((AccessRecord, "access"), (VehicleRecord, "vehicle")):
            for row in rows.get(model, []):
                # One id per new row: the same message twice in one batch (a redelivery) gets one outbox
                # row, not a key clash.
                new_ids = new_keys.get(model, {}).get((row["device_id"], row["msg_key"]))
                if not new_ids:
                    continue
                record_id = new_ids.pop(0)
                device = codes[row["device_id"]]
                payload = {k: v for k, v in row.items() if k not in ("device_id", "msg_key")}
                payload.update(kind=kind, record_id=record_id, device=device.code, device_type=device.device_type,
                               community=device.community, ts=row["ts"].isoformat())
                outbox.append({"kind": kind, "record_id": record_id, "payload": payload, "created_at": utcnow(),
                               "idempotency_key": _record_key(kind, device.code, row["msg_key"], row["ts"])})
        if outbox and self.engine.dialect.name == "postgresql":
            OUTBOX_PG.run(conn, outbox)
        elif outbox:
            conn.execute(OutboxRecord.__table__.insert(), outbox)  # type: ignore[attr-defined]
        return len(outbox)

    def _touch(self, conn: Any, updates: list[dict[str, Any]]) -> None:
        d = Device.__table__.c  # type: ignore[attr-defined]
        statement = (update(Device.__table__).where(d.id == bindparam("b_id")).values(  # type: ignore[arg-type]
            last_seen=bindparam("b_last_seen"),
            battery=func.coalesce(bindparam("b_battery"), d.battery),
            firmware=func.coalesce(bindparam("b_firmware"), d.firmware),
            state=case((d.state == DeviceState.maintenance.value, d.state), else_=DeviceState.online.value)))
        conn.execute(statement, [{f"b_{k}": v for k, v in row.items()} for row in updates])

    def _answer(self, conn: Any, acks: list[tuple[protocol.CommandAck, int]], now: datetime) -> None:
        c = DeviceCommand.__table__.c  # type: ignore[attr-defined]
        for ack, device_id in acks:
            conn.execute(update(DeviceCommand.__table__).where(  # type: ignore[arg-type]
                c.cmd_id == ack.cmd_id, c.device_id == device_id, c.status == "sent").values(
                status="acked" if ack.ok else "failed", answered_at=now,
                result={"ok": ack.ok, "detail": ack.detail, "state": ack.state}))

    def _triggers(self, telemetry: dict[tuple[int, str], tuple[DeviceInfo, datetime, dict[str, float]]],
                  events: dict[tuple[int, str], tuple[DeviceInfo, Any, str]],
                  new_keys: dict[Any, dict[tuple[int, str], list[int]]]) -> list[Trigger]:
        """Alarm triggers of the messages written for the first time (a redelivery raises nothing)."""
        fired: list[Trigger] = []
        new_telemetry = new_keys.get(Telemetry, {})
        for key, (device, ts, metrics) in telemetry.items():
            if key in new_telemetry:
                fired += self.evaluator.on_telemetry(device.id, device.device_type, ts, metrics)
        new_events = new_keys.get(DeviceEvent, {})
        for key, (device, payload, snapshot_key) in events.items():
            if key in new_events:
                fired += self.evaluator.on_event(device.id, device.device_type, payload.ts, payload.event,
                                                 snapshot_key, payload.detail)
        return fired
