"""Alarm rules evaluated on what devices send, one open alarm per device and type, and its lifecycle.

    RuleEvaluator   turns telemetry and events into triggers, by the rule table (threshold,
                    duration, rate of change, event kinds); keeps the little state duration and
                    rate rules need in memory (a restarted ingest starts their clocks again);
    raise_alarms    writes triggers in the caller's transaction: a repeat of an open alarm counts
                    it and moves `last_at`; a new one is returned so the fast path can notify;
    acknowledge / clear   active → acknowledged → cleared, with who and when.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from linli.devices.registry import AlarmRule, RuleBook
from linli.errors import IllegalTransition, NotFound
from linli.models import Alarm, AlarmStatus, utcnow

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
}
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "warning": 3}


@dataclass(frozen=True)
class Trigger:
    """A rule that fired on one message."""

    device_id: int
    rule: AlarmRule
    at: datetime
    value: float | None
    message: str
    snapshot_key: str = ""


@dataclass(frozen=True)
class NewAlarm:
    """An alarm raised for the first time (not a repeat): the fast path takes it from here."""

    alarm_id: int
    rule: AlarmRule
    device_id: int


class RuleEvaluator:
    """Applies a rule book to telemetry and events."""

    def __init__(self, rules: RuleBook) -> None:
        self.rules = rules
        self._since: dict[tuple[int, str, str], datetime] = {}  # duration rules: first breach
        self._last: dict[tuple[int, str], tuple[datetime, float]] = {}  # rate rules: previous reading

    def on_telemetry(self, device_id: int, device_type: str, at: datetime, metrics: dict[str, float]) -> list[Trigger]:
        """Triggers fired by one telemetry message."""
        fired: list[Trigger] = []
        for rule in self.rules.for_type(device_type):
            if rule.kind == "event" or rule.metric not in metrics:
                continue
            value = metrics[rule.metric]
            check = _CHECKS[rule.kind]
            if check(self, device_id, rule, at, value):
                fired.append(Trigger(device_id, rule, at, value, f"{rule.metric}={value:g} ({rule.op} {rule.value:g})"))
        for name, value in metrics.items():
            self._last[(device_id, name)] = (at, value)
        return fired

    def on_event(self, device_id: int, device_type: str, at: datetime, event: str, snapshot_key: str = "",
                 detail: str = "") -> list[Trigger]:
        """Triggers fired by one event message."""
        return [Trigger(device_id, rule, at, None, detail or event, snapshot_key)
                for rule in self.rules.for_type(device_type) if rule.kind == "event" and event in rule.events]

    def _threshold(self, device_id: int, rule: AlarmRule, at: datetime, value: float) -> bool:
        return COMPARE[rule.op](value, rule.value)

    def _duration(self, device_id: int, rule: AlarmRule, at: datetime, value: float) -> bool:
        key = (device_id, rule.alarm_type, rule.metric)
        if not COMPARE[rule.op](value, rule.value):
            self._since.pop(key, None)
            return False
        since = self._since.setdefault(key, at)
        return (at - since).total_seconds() >= rule.seconds

    def _rate(self, device_id: int, rule: AlarmRule, at: datetime, value: float) -> bool:
        previous = self._last.get((device_id, rule.metric))
        if previous is None:
            return False
        seconds = (at - previous[0]).total_seconds()
        if seconds < 1 or seconds > 600:  # out of order, too close to tell, or too far apart to be a rate
            return False
        per_minute = (value - previous[1]) / seconds * 60
        return COMPARE[rule.op](per_minute, rule.value)


_CHECKS: dict[str, Callable[[RuleEvaluator, int, AlarmRule, datetime, float], bool]] = {
    "threshold": RuleEvaluator._threshold,
    "duration": RuleEvaluator._duration,
    "rate": RuleEvaluator._rate,
}

_OPEN = Alarm.__table__.c  # type: ignore[attr-defined]


def raise_alarms(conn: Connection, triggers: list[Trigger]) -> list[NewAlarm]:
    """Record triggers: update the open alarm of each device and type, or open a new one."""
    new: list[NewAlarm] = []
    # The same alarm firing many times in one batch is one write: counted n times, the latest trigger kept.
    latest: dict[tuple[int, str], tuple[Trigger, int]] = {}
    for trigger in triggers:
        key = (trigger.device_id, trigger.rule.alarm_type)
        first, seen = latest.get(key, (trigger, 0))
        latest[key] = (trigger if trigger.at >= first.at else first, seen + 1)
    for trigger, times in latest.values():
        rule = trigger.rule
        where = and_(_OPEN.device_id == trigger.device_id, _OPEN.alarm_type == rule.alarm_type,
                     _OPEN.status != AlarmStatus.cleared.value)
        if _repeat(conn, where, trigger, times):
            continue
        row = {"device_id": trigger.device_id, "alarm_type": rule.alarm_type, "severity": rule.severity,
               "life_safety": rule.life_safety, "status": AlarmStatus.active.value, "message": trigger.message[:500],
               "value": trigger.value, "count": times, "first_at": trigger.at, "last_at": trigger.at,
               "acknowledged_by": "", "cleared_by": "", "snapshot_key": trigger.snapshot_key}
        try:
            with conn.begin_nested():  # another replica may open the same alarm at the same moment
                alarm_id = conn.execute(insert(Alarm).values(row).returning(_OPEN.id)).scalar_one()
        except IntegrityError:
            _repeat(conn, where, trigger, times)
            continue
        new.append(NewAlarm(alarm_id, rule, trigger.device_id))
    return new


def _repeat(conn: Connection, where: object, trigger: Trigger, times: int = 1) -> bool:
    statement = (update(Alarm).where(where)  # type: ignore[arg-type]
                 .values(count=_OPEN.count + times, last_at=trigger.at, value=trigger.value,
                         message=trigger.message[:500]))
    if trigger.snapshot_key:
        statement = statement.values(snapshot_key=trigger.snapshot_key)
    return bool(conn.execute(statement).rowcount)


def open_alarm(session: Session, device_id: int, alarm_type: str) -> Alarm | None:
    """The open (not cleared) alarm of a device and type, if any."""
    statement = select(Alarm).where(Alarm.device_id == device_id, Alarm.alarm_type == alarm_type,
                                    Alarm.status != AlarmStatus.cleared)
    return session.execute(statement).scalars().first()


def _get(session: Session, alarm_id: int) -> Alarm:
    alarm = session.get(Alarm, alarm_id)
    if alarm is None:
        raise NotFound(f"no alarm with id {alarm_id}", hint="see the active alarms on the dashboard")
    return alarm


def acknowledge(session: Session, alarm_id: int, *, by: str) -> Alarm:
    """Someone has seen the alarm: active → acknowledged (the caller commits)."""
    alarm = _get(session, alarm_id)
    if alarm.status != AlarmStatus.active:
        raise IllegalTransition(f"alarm {alarm_id} is {alarm.status}, only an active alarm can be acknowledged")
    alarm.status, alarm.acknowledged_by, alarm.acknowledged_at = AlarmStatus.acknowledged, by, utcnow()
    session.add(alarm)
    return alarm


def clear(session: Session, alarm_id: int, *, by: str) -> Alarm:
    """The cause is gone: active or acknowledged → cleared; a new trigger then opens a new alarm."""
    alarm = _get(session, alarm_id)
    if alarm.status == AlarmStatus.cleared:
        raise IllegalTransition(f"alarm {alarm_id} is already cleared")
    if alarm.status == AlarmStatus.active:  # clearing implies having seen it
        alarm.acknowledged_by, alarm.acknowledged_at = by, utcnow()
    alarm.status, alarm.cleared_by, alarm.cleared_at = AlarmStatus.cleared, by, utcnow()
    session.add(alarm)
    return alarm


def active_alarms(session: Session, *, limit: int = 200) -> list[Alarm]:
    """Open alarms, most severe and most recent first."""
    rows = session.execute(select(Alarm).where(Alarm.status != AlarmStatus.cleared)
                           .order_by(Alarm.last_at.desc()).limit(limit)).scalars().all()  # type: ignore[attr-defined]
    return sorted(rows, key=lambda a: SEVERITY_RANK.get(str(a.severity), 9))
