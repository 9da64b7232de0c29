"""Pushes to the city data hub (一次采集，多方使用): outbox → per-endpoint cursor → HTTP, with a field policy.

Records (access, vehicle) are written to ``datahub_outbox`` in the same transaction as the record
itself (linli.devices.writer). `push_batch` sends the next batch after an endpoint's cursor:

- the field policy masks or drops personal fields (ID numbers, plates …) before anything leaves;
- the body is rendered from the endpoint's Jinja2 template (sandboxed: admins type it) with the
  records, each carrying its ``idempotency_key``; the request carries an ``Idempotency-Key`` header
  for the batch, so a receiver can drop a batch it has already taken;
- a 2xx moves the cursor; a failure is retried with exponential backoff; after `max_attempts`
  failures the batch is parked (``datahub_parked``, replayable) and staff are alerted, so one
  poisoned batch never blocks the rest. Delivery is at least once: a crash after the receiver
  answered and before the cursor moved sends that batch again, with the same keys.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, Field, SecretStr, field_validator
from sqlalchemy import Engine, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from linli import notify
from linli.errors import ConfigurationError, LinliError
from linli.events import SignalOut
from linli.models import EndpointCursor, OutboxRecord, ParkedRecord, Staff, StaffRole, utcnow
from linli.privacy import mask_id_number, mask_phone, mask_plate

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = '{"source": "linli", "endpoint": {{ endpoint | tojson }}, "records": {{ records | tojson }}}'
FieldAction = Literal["keep", "mask", "drop"]
PENDING_EVENT = "linli.datahub.pending"  # the datahub-push DAG's trigger
OUTBOX_RESOURCE = "linli.datahub.outbox"


def _mask_credential(value: Any, record: dict[str, Any]) -> Any:
    if record.get("method") == "id_card":
        return mask_id_number(str(value))
    return mask_phone(str(value))  # cards, QR tokens, app refs: first 3 and last 4 visible at most


MASKS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "plate": lambda value, _r: mask_plate(str(value)),
    "credential_ref": _mask_credential,
    "id_number": lambda value, _r: mask_id_number(str(value)),
    "phone": lambda value, _r: mask_phone(str(value)),
}


class EndpointFields(BaseModel):
    """What an admin sets for one data-hub endpoint: the one definition of the block's fields."""

    url: str = Field(description="Where batches of records are POSTed (JSON).")
    auth_header: str = Field(default="Authorization", description="Header that carries the secret.")
    auth_value: SecretStr = Field(default=SecretStr(""), description="Secret header value, e.g. 'Bearer …'; "
                                  "empty for none.")
    kinds: list[str] = Field(default_factory=lambda: ["access", "vehicle"], description="Record kinds to push.")
    payload_template: str = Field(default=DEFAULT_TEMPLATE, description="Jinja2 template of the JSON body "
                                  "(sees `records`, a list of dicts, and `endpoint`, the name); runs sandboxed.")
    field_policy: dict[str, FieldAction] = Field(
        default_factory=lambda: {"credential_ref": "mask", "plate": "mask"},
        description="Per field: keep, mask or drop; fields not named are kept (ID numbers in credential_ref "
                    "and plates are masked by default).")
    batch_size: int = Field(default=500, ge=1, le=10000, description="Records per request.")
    max_attempts: int = Field(default=8, ge=1, description="Failed attempts of a batch before it is parked "
                              "and staff are alerted.")
    backoff_seconds: float = Field(default=2, gt=0, description="First retry delay; doubles, at most 60 s.")
    timeout_seconds: float = Field(default=10, gt=0, description="Give up on one request after this long.")

    @field_validator("field_policy")
    @classmethod
    def _maskable(cls, policy: dict[str, FieldAction]) -> dict[str, FieldAction]:
        unknown = sorted(f for f, action in policy.items() if action == "mask" and f not in MASKS)
        if unknown:
            raise ValueError(f"no masking rule for {', '.join(unknown)}: mask one of {', '.join(MASKS)}, "
                             "or drop the field")
        return policy


class EndpointConfig(EndpointFields):
    """One data-hub endpoint: the block's fields and the name its cursor and status are kept under."""

    name: str = Field(min_length=1, max_length=80, description="Cursor and status are kept under this name.")


def apply_policy(record: dict[str, Any], policy: dict[str, FieldAction]) -> dict[str, Any]:
    """The record with each field kept, masked or dropped as the policy says."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        action = policy.get(key, "keep")
        if action == "drop":
            continue
        if action == "mask" and value is not None:
            mask = MASKS.get(key)
            if mask is None:
                raise ConfigurationError(f"no masking rule for field {key!r}",
                                         hint=f"mask one of {', '.join(MASKS)}, or drop the field")
            value = mask(value, record)
        out[key] = value
    return out


_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_ENV.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}


def render_body(template: str, records: list[dict[str, Any]], endpoint: str) -> bytes:
    """The request body from the endpoint's template; ConfigurationError if it is broken or not JSON."""
    try:
        text = _ENV.from_string(template).render(records=records, endpoint=endpoint)
        json.loads(text)
    except (jinja2.TemplateError, ValueError) as err:
        raise ConfigurationError(f"payload template of endpoint {endpoint!r} does not give JSON: {err}",
                                 hint="fix the template in the data-hub endpoint block") from err
    return text.encode()


@dataclass
class PushResult:
    """What one push attempt did."""

    endpoint: str
    sent: int = 0
    parked: int = 0
    failed: bool = False
    waiting: bool = False  # in backoff, nothing tried
    caught_up: bool = False
    error: str = ""
    alerts: list[int] | None = None


def _ensure_cursor(session: Session, endpoint: str) -> None:
    """Create the endpoint's cursor at 0 unless it exists (two first pushes at once create one row)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(EndpointCursor).values(endpoint=endpoint, updated_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["endpoint"]))


def cursor_for(session: Session, endpoint: str) -> EndpointCursor:
    """The endpoint's cursor row (locked for update where the database can), created at 0 the first time."""
    _ensure_cursor(session, endpoint)
    return session.exec(select(EndpointCursor).where(EndpointCursor.endpoint == endpoint).with_for_update()).one()


def lease_seconds(endpoint: EndpointConfig) -> float:
    """How long a push holds its endpoint: longer than one request can take, so a crash frees it soon after."""
    return 30 + 2 * endpoint.timeout_seconds


def _claim(engine: Engine, endpoint: EndpointConfig, now: datetime) -> tuple[int, datetime] | None:
    """Take the endpoint for one batch: (cursor's last id, lease) or None while backing off or another push has it.

    The lease is the cursor's ``next_attempt_at`` (no push starts before it), set by one conditional
    UPDATE, so of two runs at once exactly one gets it, on PostgreSQL and SQLite alike; nothing stays
    locked while the request is in flight, so ingest's writes never wait for a slow receiver.
    """
    table = EndpointCursor.__table__.c  # type: ignore[attr-defined]
    with Session(engine) as session:
        row = session.execute(select(table.next_attempt_at).where(table.endpoint == endpoint.name)).first()
        if row is not None and row[0] is not None and row[0] > now:
            return None  # backing off, or another run holds it: a cheap read, no write
        if row is None:
            _ensure_cursor(session, endpoint.name)
        lease = now + timedelta(seconds=lease_seconds(endpoint))
        taken = session.execute(update(EndpointCursor).where(
            table.endpoint == endpoint.name, or_(table.next_attempt_at.is_(None), table.next_attempt_at <= now))
            .values(next_attempt_at=lease))
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return None
        last_id = session.execute(select(table.last_id).where(table.endpoint == endpoint.name)).scalar_one()
        session.commit()
    return int(last_id), lease


def _release(engine: Engine, endpoint: str, lease: datetime) -> None:
    """Give the endpoint back without moving its cursor (nothing to send, or the batch never went out)."""
    table = EndpointCursor.__table__.c  # type: ignore[attr-defined]
    with Session(engine) as session:
        session.execute(update(EndpointCursor).where(table.endpoint == endpoint, table.next_attempt_at == lease)
                        .values(next_attempt_at=None))
        session.commit()


def push_batch(engine: Engine, endpoint: EndpointConfig, *, client: httpx.Client, now: datetime | None = None,
               templates_dir: Path | None = None, language: str = "zh") -> PushResult:
    """Push the next batch after the endpoint's cursor (one HTTP request at most).

    Safe with several pushes of one endpoint at once (two flow runs, two workers): each batch is
    claimed first (`_claim`), so one run sends it and the other waits (``result.waiting``).
    """
    now = now or utcnow()
    result = PushResult(endpoint.name)
    claim = _claim(engine, endpoint, now)
    if claim is None:
        result.waiting = True
        return result
    last_seen, lease = claim
    finished = False
    try:
        with Session(engine) as session:
            rows = session.exec(select(OutboxRecord).where(OutboxRecord.id > last_seen,
                                                           col(OutboxRecord.kind).in_(endpoint.kinds))
                                .order_by(OutboxRecord.id).limit(endpoint.batch_size)).all()  # type: ignore[arg-type]
        if not rows:
            result.caught_up = True
            return result
        records = [apply_policy({**row.payload, "idempotency_key": row.idempotency_key}, endpoint.field_policy)
                   for row in rows]
        body = render_body(endpoint.payload_template, records, endpoint.name)
        headers = {"Content-Type": "application/json",
                   "Idempotency-Key": f"{endpoint.name}:{rows[0].id}-{rows[-1].id}"}
        if endpoint.auth_value.get_secret_value():
            headers[endpoint.auth_header] = endpoint.auth_value.get_secret_value()
        try:
            response = client.post(endpoint.url, content=body, headers=headers, timeout=endpoint.timeout_seconds)
            error = "" if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}: {err}"
        finished = _finish(engine, endpoint, lease, [row.id or 0 for row in rows], error, result, now=utcnow(),
                           templates_dir=templates_dir, language=language)
    finally:
        if not finished:
            _release(engine, endpoint.name, lease)
    if result.failed:
        log.warning("data hub %s: %s (%s)", endpoint.name, result.error, "parked" if result.parked else "will retry")
    return result


def _finish(engine: Engine, endpoint: EndpointConfig, lease: datetime, ids: list[int], error: str,
            result: PushResult, *, now: datetime, templates_dir: Path | None, language: str) -> bool:
    """Move the cursor past a delivered batch, or count the failure (backing off or parking); ends the lease.

    Writes only while the lease is still this push's: if it ran out (or a replay reset the cursor)
    meanwhile, nothing is recorded and the batch goes again later with the same keys (at least once).
    """
    table = EndpointCursor.__table__.c  # type: ignore[attr-defined]
    with Session(engine, expire_on_commit=False) as session:
        cursor = session.exec(select(EndpointCursor).where(EndpointCursor.endpoint == endpoint.name)).one()
        if cursor.next_attempt_at != lease:
            log.warning("data hub %s: this push's lease ran out; its batch is sent again later", endpoint.name)
            result.error = "lease lost"
            return True
        values: dict[str, Any] = {"updated_at": now}
        if not error:
            values.update(last_id=ids[-1], delivered=cursor.delivered + len(ids), failures=0, status="ok",
                          last_error="", next_attempt_at=None)
            result.sent = len(ids)
        else:
            failures = cursor.failures + 1
            values.update(failures=failures, last_error=error[:1000])
            result.failed, result.error = True, error
            if failures >= endpoint.max_attempts:
                session.execute(insert(ParkedRecord), [
                    {"endpoint": endpoint.name, "outbox_id": outbox_id, "attempts": failures,
                     "error": error[:1000], "parked_at": now} for outbox_id in ids])
                values.update(last_id=ids[-1], parked=cursor.parked + len(ids), failures=0, status="parked",
                              next_attempt_at=None)
                result.parked = len(ids)
                if templates_dir is not None:
                    result.alerts = _alert(session, endpoint.name, len(ids), error, templates_dir, language)
            else:
                delay = min(60.0, endpoint.backoff_seconds * 2 ** (failures - 1))
                values.update(status="retrying", next_attempt_at=now + timedelta(seconds=delay))
        written = session.execute(update(EndpointCursor).where(table.endpoint == endpoint.name,
                                                               table.next_attempt_at == lease).values(**values))
        if written.rowcount != 1:  # type: ignore[attr-defined]  # lost between the read and the write
            session.rollback()
            result.sent = result.parked = 0
            result.alerts, result.error = None, "lease lost"
            return True
        session.commit()
    return True


def _alert(session: Session, endpoint: str, count: int, error: str, templates_dir: Path, language: str) -> list[int]:
    """Queue a 'records parked' notice for the street office's officers."""
    ids = []
    officers = session.exec(select(Staff).where(Staff.role == StaffRole.street_officer)).all()
    for staff in officers:
        row = notify.queue(session, kind="datahub_parked", target=f"staff:{staff.id}",
                           template=notify.template_for("datahub_parked", language),
                           context={"endpoint": endpoint, "count": count, "error": error[:300],
                                    "recipient": {"name": staff.name}},
                           language=language, case_id=None, templates_dir=templates_dir)
        if row.id is not None:
            ids.append(row.id)
    return ids


def replay_parked(session: Session, endpoint: str) -> int:
    """Send an endpoint's parked records again: its cursor goes back to the first parked record.

    Records after it that were delivered go again too, with the same idempotency keys, so the
    receiver drops them; returns how many parked records were released (the caller commits).
    """
    parked = session.exec(select(ParkedRecord).where(ParkedRecord.endpoint == endpoint)).all()
    for row in parked:
        session.delete(row)
    cursor = cursor_for(session, endpoint)
    first = min((row.outbox_id for row in parked), default=None)
    if first is not None:
        cursor.last_id = min(cursor.last_id, first - 1)  # later records are sent again; keys make that harmless
        cursor.parked -= len(parked)
        cursor.status = "ok"
        cursor.next_attempt_at = None  # at once; a push in flight loses its lease and records nothing
        session.add(cursor)
    return len(parked)


def status(session: Session) -> list[dict[str, Any]]:
    """Every endpoint's cursor and how far behind the outbox it is."""
    latest = session.exec(select(OutboxRecord.id).order_by(col(OutboxRecord.id).desc()).limit(1)).first() or 0
    rows = session.exec(select(EndpointCursor).order_by(EndpointCursor.endpoint)).all()
    return [{"endpoint": c.endpoint, "status": c.status, "delivered": c.delivered, "parked": c.parked,
             "behind": max(0, latest - c.last_id), "failures": c.failures, "last_error": c.last_error,
             "updated_at": c.updated_at} for c in rows]


def push_until_caught_up(engine: Engine, endpoint: EndpointConfig, *, client: httpx.Client,
                         deadline_seconds: float = 50, templates_dir: Path | None = None,
                         sleep: Callable[[float], None] | None = None) -> list[PushResult]:
    """Push batch after batch until the endpoint is caught up, waiting out backoffs, for at most the deadline."""
    sleep = sleep or time.sleep
    stop_at = time.monotonic() + deadline_seconds
    results: list[PushResult] = []
    while time.monotonic() < stop_at:
        try:
            result = push_batch(engine, endpoint, client=client, templates_dir=templates_dir)
        except LinliError as err:
            log.error("data hub %s: %s", endpoint.name, err)
            results.append(PushResult(endpoint.name, failed=True, error=str(err)))
            break
        results.append(result)
        if result.caught_up:
            break
        if result.waiting or result.failed:
            sleep(0.2)
    return results


class PendingAnnouncer:
    """Announces ``linli.datahub.pending`` at most once every `interval` s while new outbox rows are written.

    Ingest writes thousands of records a second: one event per record would swamp Prefect, so this
    coalesces. It reads a counter ingest's writer keeps anyway (outbox rows written), from its own
    thread, so ingest's hot path does nothing more for it. The first rows after a quiet spell are
    announced at the next poll; the datahub-push deployment's trigger then pushes them within seconds
    (its schedule still runs, for rows written while Prefect was away).
    """

    def __init__(self, written: Callable[[], int], signal: Callable[[SignalOut], None], *, interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._written = written
        self._signal = signal
        self.interval = interval
        self._clock = clock
        self._announced = written()
        self._last = -math.inf

    def tick(self) -> int:
        """Announce the rows written since the last announcement, if any and if `interval` has passed; how many."""
        now = self._clock()
        if now - self._last < self.interval:
            return 0
        count = self._written()
        new = count - self._announced
        if new <= 0:
            return 0
        self._signal(SignalOut(PENDING_EVENT, OUTBOX_RESOURCE, "data-hub outbox", {"records": new}))
        self._announced, self._last = count, now
        return new

    def run(self, stop: threading.Event, *, poll: float = 0.5) -> None:
        """Tick every `poll` s until `stop` is set."""
        while not stop.wait(poll):
            self.tick()
