"""The alarms' fast path: a new alarm notified straight from ingest, then a case opened and announced.

Ingest hands new alarms over after its batch is committed; the work runs on a small thread pool
so the writer never waits for Apprise or for case intake. For a life-safety alarm (gas, smoke,
SOS, fall, fire host) the on-duty staff of the device's grid are notified first — through
linli.notify's outbox and delivery, one send per responder at the same time, the responders cached
a few seconds per community and grid — then, for any rule that opens cases, a case is filed through
the loop's intake (source ``device_alarm``) and its ``linli.case.reported`` event emitted, so the
governance flows take it from there. A throwing camera's snapshot is linked to the case as its
photo and shown in the notification with a presigned URL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session, select

from linli import notify
from linli.devices.alarms import SEVERITY_RANK, NewAlarm
from linli.devices.registry import DEVICE_TYPES, SEVERITY_NAMES, alarm_name
from linli.errors import LinliError
from linli.events import CaseEventOut, EventBus
from linli.loop import LoopConfig
from linli.loop.intake import ReportIn, file_report
from linli.models import (
    Alarm,
    AlarmStatus,
    Building,
    Case,
    CasePhoto,
    CaseSource,
    CaseStatus,
    Community,
    Device,
    Grid,
    Notification,
    PhotoKind,
    Staff,
    StaffRole,
    utcnow,
)
from linli.registry import rostered_ids
from linli.statemachine import record
from linli.storage import ObjectStore

log = logging.getLogger(__name__)
HEALTH_ALARMS = ("offline", "low_battery")  # the device's own health: maintenance cases
FINISHED_STATUSES = (CaseStatus.resolved, CaseStatus.closed, CaseStatus.merged, CaseStatus.rejected)  # no longer joined
RESPONDER_TEAM = "security"  # property security answer gas, smoke, SOS and fall alarms with the grid worker


@dataclass
class FastPathResult:
    """What the fast path did for one alarm; the case is filed on another worker (`case` is its future)."""

    alarm_id: int
    notifications: list[int]
    case: Future[int | None] | None = None

    @property
    def case_id(self) -> int | None:
        """The case opened for the alarm (waits for it to be filed)."""
        return self.case.result() if self.case is not None else None


def responders(session: Session, device: Device) -> list[Staff]:
    """On-duty staff for a device's alarm: its grid's worker and the community's security team.

    With nobody on duty, the community's team leads, so an alarm is never sent to no one.
    """
    found: list[Staff] = []
    if device.grid_id is not None:
        grid = session.get(Grid, device.grid_id)
        worker = session.get(Staff, grid.grid_worker_id) if grid and grid.grid_worker_id else None
        if worker is not None and worker.on_duty:
            found.append(worker)
    found += session.exec(select(Staff).where(Staff.community_id == device.community_id, Staff.team == RESPONDER_TEAM,
                                              Staff.on_duty == True, Staff.level == 0)  # noqa: E712
                          .order_by(Staff.id)).all()
    rostered = rostered_ids(session, team=RESPONDER_TEAM)  # the duty roster, when the team keeps one
    if rostered is not None:
        found = [s for s in found if s.team != RESPONDER_TEAM or s.id in rostered]
    if not found:
        found = list(session.exec(select(Staff).where(Staff.community_id == device.community_id,
                                                      Staff.role == StaffRole.team_lead).order_by(Staff.id)).all())
    return list({staff.id: staff for staff in found}.values())


def place(session: Session, device: Device) -> tuple[Community, Building | None]:
    """The community and building of a device."""
    community = session.get(Community, device.community_id)
    assert community is not None  # a foreign key
    building = session.get(Building, device.building_id) if device.building_id is not None else None
    return community, building


class AlarmFastPath:
    """Notifies, opens cases and announces them for new alarms, off the ingest writer's thread."""

    def __init__(self, engine: Engine, *, notifier: notify.Notifier, global_urls: list[str], config: LoopConfig,
                 bus: EventBus, store: ObjectStore | None = None, workers: int = 8,
                 recipients_ttl: float = 5.0) -> None:
        self.engine = engine
        self.notifier = notifier
        self.global_urls = global_urls
        self.config = config
        self.bus = bus
        self.store = store
        # Notices have their own workers: filing a case is slower and must never hold a notice back.
        # Eight, not four: under load a notice mostly waits for the GIL and the database, not the CPU,
        # and with four a burst of alarms queued behind each other (up to 0.5 s "waited for a worker").
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alarm-notify")
        self._cases = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alarm-case")
        # On-duty responders per (community, grid), kept a few seconds: a burst of alarms, or one under
        # load, does not query the staff and the roster again each time. A change of duty applies after
        # at most `recipients_ttl` seconds (0: always ask the database).
        self.recipients_ttl = recipients_ttl
        self._recipients: dict[tuple[int, int | None], tuple[float, list[tuple[int, str]]]] = {}
        self._sends = ThreadPoolExecutor(max_workers=workers * 2, thread_name_prefix="alarm-send")
        # Told (reading time, notices sent time) for each alarm notified: the alarm-latency metric.
        self.on_notified: Callable[[datetime, datetime], None] | None = None

    def submit(self, alarms: list[NewAlarm]) -> list[Future[FastPathResult | None]]:
        """Handle each alarm on the pool (life-safety ones first); returns the futures.

        One reading can raise several alarms of one device (a gas leak and gas rising fast): each is
        notified as its rule says, but only the most severe opens a case; the others join it.
        """
        ordered = sorted(alarms, key=lambda a: (not (a.rule.life_safety or a.rule.notify),
                                                SEVERITY_RANK.get(a.rule.severity, 9)))
        leaders: dict[tuple[int, CaseSource], NewAlarm] = {}  # (device, kind of case) → the alarm filing it
        followers: dict[int, list[NewAlarm]] = {}
        for alarm in ordered:
            if alarm.rule.opens_case:
                leader = leaders.setdefault((alarm.device_id, case_source(alarm.rule.alarm_type)), alarm)
                if leader is not alarm:
                    followers.setdefault(leader.alarm_id, []).append(alarm)
        joining = {a.alarm_id for group in followers.values() for a in group}
        submitted = time.perf_counter()
        return [self._pool.submit(self.handle, alarm, submitted, followers.get(alarm.alarm_id, []),
                                  alarm.alarm_id in joining) for alarm in ordered]

    def close(self) -> None:
        """Finish what was submitted."""
        self._pool.shutdown(wait=True)  # first: its workers may still hand cases over
        self._sends.shutdown(wait=True)
        self._cases.shutdown(wait=True)

    def handle(self, new: NewAlarm, submitted: float | None = None, followers: list[NewAlarm] | None = None,
               joining: bool = False) -> FastPathResult | None:
        """Notify (life safety), then open and announce a case — which `followers` join; an alarm `joining`
        another's case opens none itself. Errors are logged, never raised."""
        try:
            urgent = new.rule.life_safety or new.rule.notify
            started = time.perf_counter()
            notifications = self.notify(new.alarm_id) if urgent else []
            if urgent:
                log.info("alarm %s: waited %.0f ms for a worker, notified in %.0f ms", new.alarm_id,
                         (started - (submitted or started)) * 1000, (time.perf_counter() - started) * 1000)
            case = (self._cases.submit(self._file, new, notifications, followers or [])
                    if new.rule.opens_case and not joining else None)
            return FastPathResult(new.alarm_id, notifications, case)
        except LinliError as err:
            log.error("alarm %s: fast path failed: %s", new.alarm_id, err)
        except Exception:  # a bug here must not kill the pool thread; ingest goes on
            log.exception("alarm %s: fast path failed", new.alarm_id)
        return None

    def _file(self, new: NewAlarm, notifications: list[int], followers: list[NewAlarm]) -> int | None:
        try:
            case_id = self.open_case(new.alarm_id, new.rule.category, notifications)
            for follower in followers:  # after the leader: they find its case open and join it
                self.open_case(follower.alarm_id, follower.rule.category, [])
            return case_id
        except LinliError as err:
            log.error("alarm %s: no case opened: %s", new.alarm_id, err)
        except Exception:
            log.exception("alarm %s: no case opened", new.alarm_id)
        return None

    def _context(self, session: Session, alarm: Alarm, device: Device) -> dict[str, object]:
        lang = self.config.language
        community, building = place(session, device)
        floor = f"{device.floor}层" if device.floor is not None and lang == "zh" else (
            f"floor {device.floor}" if device.floor is not None else "")
        spec = DEVICE_TYPES.get(device.device_type)
        snapshot_url = self.store.url(alarm.snapshot_key) if alarm.snapshot_key and self.store else ""
        severity = SEVERITY_NAMES.get(str(alarm.severity), (str(alarm.severity),) * 2)
        return {
            "id": alarm.id, "type": alarm.alarm_type, "name": alarm_name(alarm.alarm_type, lang),
            "severity": str(alarm.severity), "severity_label": severity[1] if lang == "en" else severity[0],
            "device_code": device.code, "device_name": device.name,
            "device_type": (spec.name_en if lang == "en" else spec.name_zh) if spec else device.device_type,
            "location": " ".join(p for p in (community.name, building.name if building else "", floor) if p),
            "at": notify.format_local(alarm.first_at, self.config.timezone), "message": alarm.message,
            "snapshot_url": snapshot_url,
        }

    def notify(self, alarm_id: int) -> list[int]:
        """Queue and deliver the alarm to every responder; returns the notification ids."""
        with Session(self.engine, expire_on_commit=False) as session:
            alarm = session.get(Alarm, alarm_id)
            device = session.get(Device, alarm.device_id) if alarm else None
            if alarm is None or device is None:
                return []
            context = self._context(session, alarm, device)
            ids = []
            for staff_id, name in self._responders(session, device):
                row = notify.queue(session, kind="alarm", target=f"staff:{staff_id}",
                                   template=notify.template_for("alarm", self.config.language),
                                   context={"alarm": context, "recipient": {"name": name}},
                                   language=self.config.language, case_id=None,
                                   templates_dir=self.config.templates_dir)
                assert row.id is not None
                ids.append(row.id)
            session.commit()
            # One send per responder at the same time: three HTTP round trips cost one, not three.
            sends = [self._sends.submit(self._deliver_one, row_id) for row_id in ids[1:]]
            notify.deliver(session, ids[:1], notifier=self.notifier, global_urls=self.global_urls)
            for send in sends:
                send.result()
            alarm.notified_at = utcnow()
            session.add(alarm)
            session.commit()
            if self.on_notified is not None:
                self.on_notified(alarm.first_at, alarm.notified_at)
            return ids

    def _responders(self, session: Session, device: Device) -> list[tuple[int, str]]:
        """(id, name) of the device's responders, from the short-lived cache when fresh."""
        key = (device.community_id, device.grid_id)
        cached = self._recipients.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.recipients_ttl:
            return cached[1]
        found = [(s.id, s.name) for s in responders(session, device) if s.id is not None]
        self._recipients[key] = (now, found)  # a dict assignment: safe between the notify threads
        return found

    def _deliver_one(self, notification_id: int) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            notify.deliver(session, [notification_id], notifier=self.notifier, global_urls=self.global_urls)

    def open_case(self, alarm_id: int, category: str, notifications: list[int]) -> int | None:
        """File a case for the alarm (linking its snapshot and notifications) and emit its event."""
        case_id, events = open_alarm_case(self.engine, alarm_id, category, config=self.config, store=self.store,
                                          notifications=notifications)
        if events:
            self.bus.emit(events)
        return case_id


def open_alarm_case(engine: Engine, alarm_id: int, category: str, *, config: LoopConfig,
                    store: ObjectStore | None = None, notifications: list[int] | None = None,
                    ) -> tuple[int | None, list[CaseEventOut]]:
    """File a case for an alarm once (its snapshot as the case photo); returns the case id and events to emit.

    An alarm of a device that already has an open case of the same kind (an alarm's case, or a
    maintenance case) joins that case — one incident, one case — with a line in its timeline.
    """
    with Session(engine, expire_on_commit=False) as session:
        alarm = session.get(Alarm, alarm_id)
        device_id = alarm.device_id if alarm else None
    if device_id is None:
        return None, []
    # One device's alarms file one at a time: the second finds the first's case (setdefault: atomic).
    with _DEVICE_LOCKS.setdefault(device_id, threading.Lock()):
        return _open_alarm_case(engine, alarm_id, category, config=config, store=store, notifications=notifications)


def _open_alarm_case(engine: Engine, alarm_id: int, category: str, *, config: LoopConfig,
                     store: ObjectStore | None, notifications: list[int] | None,
                     ) -> tuple[int | None, list[CaseEventOut]]:
    with Session(engine, expire_on_commit=False) as session:
        alarm = session.get(Alarm, alarm_id)
        device = session.get(Device, alarm.device_id) if alarm else None
        if alarm is None or device is None or alarm.case_id is not None:
            return (alarm.case_id if alarm else None), []
        source = case_source(alarm.alarm_type)
        joined = _incident_case(session, alarm, source)
        if joined is not None:
            alarm.case_id = joined.id
            session.add(alarm)
            record(session, joined, actor="system", action="alarm_joined",
                   reason=f"{alarm_name(alarm.alarm_type, config.language)}（{device.code}）：{alarm.message}"[:1000])
            _link_notifications(session, notifications, joined.id)  # type: ignore[arg-type]
            session.commit()
            log.info("alarm %s joined case %s", alarm_id, joined.number)
            return joined.id, []
        community, building = place(session, device)
        lang = config.language
        text = (f"设备告警：{alarm_name(alarm.alarm_type, 'zh')} — {device.name}（{device.code}）：{alarm.message}"
                if lang == "zh" else
                f"Device alarm: {alarm_name(alarm.alarm_type, 'en')} — {device.name} ({device.code}): "
                f"{alarm.message}")
        report = ReportIn(description=text[:2000], category=category, source=source,
                          building=building.code if building else None,
                          community=None if building else community.code)
        result = file_report(session, report, config=config)
        alarm.case_id = result.case_id
        session.add(alarm)
        if alarm.snapshot_key and store is not None:
            size = len(store.get(alarm.snapshot_key))
            session.add(CasePhoto(case_id=result.case_id, kind=PhotoKind.before, key=alarm.snapshot_key,
                                  content_type="image/png" if alarm.snapshot_key.endswith(".png")
                                  else "image/jpeg", size=size))
        _link_notifications(session, notifications, result.case_id)
        session.commit()
    log.info("alarm %s opened case %s", alarm_id, result.case_number)
    return result.case_id, list(result.events)


_DEVICE_LOCKS: dict[int, threading.Lock] = {}


def case_source(alarm_type: str) -> CaseSource:
    """The kind of case an alarm files: health alarms (offline, low battery) open maintenance cases, kept
    apart from the cases of the device's other alarms."""
    return CaseSource.device_health if alarm_type in HEALTH_ALARMS else CaseSource.device_alarm


def _incident_case(session: Session, alarm: Alarm, source: CaseSource) -> Case | None:
    """An open case of the same source that another not-cleared alarm of this device belongs to."""
    return session.exec(
        select(Case).join(Alarm, Alarm.case_id == Case.id)  # type: ignore[arg-type]
        .where(Alarm.device_id == alarm.device_id, Alarm.id != alarm.id, Alarm.status != AlarmStatus.cleared,
               Case.source == source,
               Case.status.not_in(FINISHED_STATUSES))  # type: ignore[attr-defined]
        .order_by(Case.id).limit(1)).first()


def _link_notifications(session: Session, notifications: list[int] | None, case_id: int) -> None:
    for row in session.exec(select(Notification).where(
            Notification.id.in_(notifications or []))).all():  # type: ignore[union-attr]
        row.case_id = case_id
        session.add(row)
