"""Patrol rounds (巡更巡检): routes of ordered checkpoints with local time windows, scans, and the daily check.

Scans come from the API/CLI (`scan`) or as `checkin` events of a patrol-checkpoint device whose code
is the checkpoint's code. A checkpoint is due between `window_start` and `window_end` (local time).
Once `window_end` plus its grace has passed, a scan inside the window is on time, one within the grace is late, none is
missed. Each late or missed checkpoint is recorded once per day and the route's security lead
(or the on-duty security team) is told. Findings on a round become cases with photos.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlmodel import Session, col, select

from linli.errors import NotFound, ValidationError
from linli.loop import LoopConfig, StepResult
from linli.loop.intake import ReportIn, file_report
from linli.models import CaseSource, Community, Device, DeviceEvent, Staff, utcnow
from linli.models.registry import AuditEntry, PatrolCheckpoint, PatrolIssue, PatrolRoute, PatrolScan
from linli.notify import queue, recipient_context
from linli.registry import ImportResult, RowError, on_duty
from linli.storage import ObjectStore


@dataclass(frozen=True)
class CheckpointIn:
    """One stop of a new route: its tag code, name and local time window 'HH:MM'."""

    code: str
    name: str
    window_start: str
    window_end: str
    grace_minutes: int = 30


def _hhmm(value: str, what: str) -> time:
    try:
        return time.fromisoformat(value)
    except ValueError as err:
        raise ValidationError(f"{what} {value!r} is not a time HH:MM", field=what) from err


def create_route(session: Session, *, code: str, name: str, community: str, lead_staff_id: int | None,
                 checkpoints: list[CheckpointIn]) -> PatrolRoute:
    """A route with its checkpoints in the given order; windows must be well-formed and in order."""
    found = session.exec(select(Community).where(Community.code == community)).first()
    if found is None:
        raise NotFound(f"no community {community!r}", hint="e.g. XFL")
    if not checkpoints:
        raise ValidationError("a route needs at least one checkpoint", field="checkpoints")
    previous: time | None = None
    for cp in checkpoints:
        start, end = _hhmm(cp.window_start, "window_start"), _hhmm(cp.window_end, "window_end")
        if end <= start:
            raise ValidationError(f"checkpoint {cp.code}: window ends before it starts", field="window_end")
        if previous is not None and start < previous:
            raise ValidationError(f"checkpoint {cp.code}: windows must follow the route's order", field="window_start")
        previous = start
    route = PatrolRoute(code=code, name=name, community_id=found.id, lead_staff_id=lead_staff_id)  # type: ignore[arg-type]
    session.add(route)
    session.flush()
    for seq, cp in enumerate(checkpoints, start=1):
        session.add(PatrolCheckpoint(route_id=route.id, seq=seq, code=cp.code, name=cp.name,  # type: ignore[arg-type]
                                     window_start=cp.window_start, window_end=cp.window_end,
                                     grace_minutes=cp.grace_minutes))
    session.flush()
    return route


# The demo's round: four stops across the day, so at any hour a new user sees done, due and missed stops.
DEMO_ROUTE = ("XFL-DAY", "幸福里日间巡更", "XFL", [
    CheckpointIn("XFL-CP-GATE", "东门岗亭", "00:00", "05:30", 30),
    CheckpointIn("XFL-CP-GARAGE", "地下车库", "06:00", "11:30", 30),
    CheckpointIn("XFL-CP-PUMP", "水泵房", "12:00", "17:30", 30),
    CheckpointIn("XFL-CP-ROOF", "3栋天台", "18:00", "23:00", 30),
])


def ensure_demo_route(session: Session) -> PatrolRoute:
    """The demo's patrol route (created once), led by the community's security team lead."""
    code, name, community, stops = DEMO_ROUTE
    existing = session.exec(select(PatrolRoute).where(PatrolRoute.code == code)).first()
    if existing is not None:
        return existing
    found = session.exec(select(Community).where(Community.code == community)).first()
    lead = session.exec(select(Staff).where(Staff.community_id == (found.id if found else None),
                                            Staff.team == "security", Staff.role == "team_lead")).first()
    return create_route(session, code=code, name=name, community=community,
                        lead_staff_id=lead.id if lead else None, checkpoints=stops)


def scan(session: Session, checkpoint_code: str, *, by: str, at: datetime | None = None,
         source: str = "api") -> PatrolScan:
    """Record a checkpoint scan (from a guard's device event or the API)."""
    checkpoint = session.exec(select(PatrolCheckpoint).where(PatrolCheckpoint.code == checkpoint_code)).first()
    if checkpoint is None:
        raise NotFound(f"no patrol checkpoint {checkpoint_code!r}", hint="scan a checkpoint tag of a route")
    row = PatrolScan(checkpoint_id=checkpoint.id, at=at or utcnow(), by=by[:80], source=source[:20])  # type: ignore[arg-type]
    session.add(row)
    session.flush()
    return row


class CheckpointStatus(BaseModel):
    """One checkpoint on one day: ok, late, missed, pending (window open) or upcoming."""

    route: str
    seq: int
    code: str
    name: str
    window: str
    status: str
    scanned_at: datetime | None


def _window(cp: PatrolCheckpoint, day: date, tz: ZoneInfo) -> tuple[datetime, datetime, datetime]:
    start = datetime.combine(day, time.fromisoformat(cp.window_start), tz)
    end = datetime.combine(day, time.fromisoformat(cp.window_end), tz)
    return start, end, end + timedelta(minutes=cp.grace_minutes)


def _status(cp: PatrolCheckpoint, scans: list[datetime], day: date, now: datetime, tz: ZoneInfo
            ) -> tuple[str, datetime | None]:
    start, end, grace = _window(cp, day, tz)
    on_time = [s for s in scans if start <= s <= end]
    if on_time:
        return "ok", on_time[0]
    late = [s for s in scans if end < s <= grace]
    if late:
        return "late", late[0]
    if now > grace:
        return "missed", None
    return ("pending" if now >= start else "upcoming"), None


def rounds_on(session: Session, *, now: datetime, tz: str, community_id: int | None = None) -> list[CheckpointStatus]:
    """Every checkpoint's status for the local day of `now` (the dashboard's 今日巡更)."""
    zone = ZoneInfo(tz)
    day = now.astimezone(zone).date()
    day_start = datetime.combine(day, time(0), zone)
    query = (select(PatrolCheckpoint, PatrolRoute).join(PatrolRoute, col(PatrolRoute.id) == PatrolCheckpoint.route_id)
             .order_by(col(PatrolRoute.code), col(PatrolCheckpoint.seq)))
    if community_id is not None:
        query = query.where(PatrolRoute.community_id == community_id)
    rows = session.exec(query).all()
    ids = [cp.id for cp, _ in rows]
    scans: dict[int, list[datetime]] = {}
    for s in session.exec(select(PatrolScan).where(col(PatrolScan.checkpoint_id).in_(ids or [-1]),
                                                   col(PatrolScan.at) >= day_start,
                                                   col(PatrolScan.at) < day_start + timedelta(days=1),
                                                   col(PatrolScan.at) <= now)
                          .order_by(col(PatrolScan.at))).all():
        scans.setdefault(s.checkpoint_id, []).append(s.at)
    # Check-ins from patrol-checkpoint devices (devices issue): the device's code is the checkpoint's code.
    by_code = {cp.code: cp.id for cp, _ in rows}
    checkins = select(Device.code, DeviceEvent.ts).join(Device, col(Device.id) == DeviceEvent.device_id)
    for code, at in session.exec(checkins
                                 .where(col(Device.code).in_(list(by_code) or [""]), DeviceEvent.event == "checkin",
                                        col(DeviceEvent.ts) >= day_start, col(DeviceEvent.ts) <= now,
                                        col(DeviceEvent.ts) < day_start + timedelta(days=1))).all():
        scans.setdefault(by_code[code], []).append(at)  # type: ignore[arg-type]
    for times in scans.values():
        times.sort()
    out = []
    for cp, route in rows:
        status, at = _status(cp, scans.get(cp.id, []), day, now, zone)  # type: ignore[arg-type]
        out.append(CheckpointStatus(route=route.name, seq=cp.seq, code=cp.code, name=cp.name,
                                    window=f"{cp.window_start}–{cp.window_end}", status=status, scanned_at=at))
    return out


@dataclass
class PatrolCheck:
    """What one run of the patrol check found and queued."""

    late: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    notifications: list[int] = field(default_factory=list)


def check_rounds(session: Session, *, now: datetime, tz: str, language: str, templates_dir: Path) -> PatrolCheck:
    """Record today's newly late or missed checkpoints and alert each route's security lead; caller commits."""
    result = PatrolCheck()
    zone = ZoneInfo(tz)
    day = now.astimezone(zone).date()
    statuses = rounds_on(session, now=now, tz=tz)
    known = set(session.exec(select(PatrolIssue.checkpoint_id).where(PatrolIssue.day == day)).all())
    by_code = {cp.code: cp for cp in session.exec(select(PatrolCheckpoint)).all()}
    alerts: dict[int, list[CheckpointStatus]] = {}
    for st in statuses:
        cp = by_code[st.code]
        if st.status not in {"late", "missed"} or cp.id in known:
            continue
        session.add(PatrolIssue(checkpoint_id=cp.id, day=day, kind=st.status, alerted_at=now))  # type: ignore[arg-type]
        (result.late if st.status == "late" else result.missed).append(st.code)
        alerts.setdefault(cp.route_id, []).append(st)
    session.flush()
    for route_id, items in alerts.items():
        route = session.get(PatrolRoute, route_id)
        assert route is not None
        targets = [f"staff:{route.lead_staff_id}"] if route.lead_staff_id else [
            f"staff:{s.id}" for s in on_duty(session, team="security") if s.role == "team_lead"]
        for target in targets:
            row = queue(session, kind="patrol_alert", target=target, template=f"patrol_alert.{language}.md.j2",
                        language=language, case_id=None, templates_dir=templates_dir,
                        context={"route": route.name, "items": [i.model_dump() for i in items],
                                 "recipient": recipient_context(session, target)})
            result.notifications.append(row.id)  # type: ignore[arg-type]
    return result


def file_finding(session: Session, *, checkpoint_code: str, text: str, config: LoopConfig,
                 category: str = "public_security", store: ObjectStore | None = None,
                 photo: bytes | None = None) -> StepResult:
    """An inspection finding at a checkpoint becomes a case (source 'patrol'), with its photo."""
    checkpoint = session.exec(select(PatrolCheckpoint).where(PatrolCheckpoint.code == checkpoint_code)).first()
    if checkpoint is None:
        raise NotFound(f"no patrol checkpoint {checkpoint_code!r}")
    route = session.get(PatrolRoute, checkpoint.route_id)
    community = session.get(Community, route.community_id) if route else None
    assert community is not None
    report = ReportIn(description=f"[巡检 {checkpoint.name}] {text}", community=community.code,
                      category=category, source=CaseSource.patrol)
    return file_report(session, report, config=config, store=store, photo=photo)


ROUTE_COLUMNS = ["route_code", "route_name", "community", "lead", "checkpoint_code", "checkpoint_name", "location",
                 "window_start", "window_end", "grace_minutes"]
ROUTE_REQUIRED = {"route_code", "route_name", "community", "checkpoint_code", "checkpoint_name", "window_start",
                  "window_end"}
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


@dataclass
class _RouteRows:
    """The rows of one route in an import file, in file order."""

    code: str
    first_line: int
    lines: list[int] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)


def _lead(session: Session, value: str, community: Community) -> int | None:
    """The staff id a 'lead' cell names: a staff id, or the name of a staff member of the community."""
    if not value:
        return None
    if value.isdigit():
        staff = session.get(Staff, int(value))
        if staff is None:
            raise ValidationError(f"no staff member with id {value}", field="lead", hint="see `linli staff`")
        return staff.id
    found = session.exec(select(Staff).where(Staff.name == value, Staff.community_id == community.id)).all()
    if len(found) != 1:
        raise ValidationError(f"{'no' if not found else 'more than one'} staff member named {value!r} in "
                              f"{community.code}", field="lead", hint="give the lead's staff id instead")
    return found[0].id


def _checkpoint(row: dict[str, str]) -> CheckpointIn:
    """One row's checkpoint, checked on its own (code, name with location, window, grace)."""
    code = row.get("checkpoint_code", "")
    if not CODE.match(code):
        raise ValidationError(f"checkpoint code {code!r} is not 1–32 letters, digits, - or _",
                              field="checkpoint_code", hint="the code the checkpoint's tag reads, e.g. XFL-CP-PUMP")
    name = row.get("checkpoint_name", "")
    location = row.get("location", "")
    # No column of its own yet: the location rides in the name, so guards and alerts see where the stop is.
    shown = f"{name}（{location}）" if location else name
    if not name or len(shown) > 100:
        raise ValidationError("checkpoint name (with its location) is empty or longer than 100 characters",
                              field="checkpoint_name")
    start, end = _hhmm(row.get("window_start", ""), "window_start"), _hhmm(row.get("window_end", ""), "window_end")
    if end <= start:
        raise ValidationError(f"window {row['window_start']}–{row['window_end']} ends before it starts "
                              "(a window may not cross midnight: split it into two checkpoints)", field="window_end")
    grace = row.get("grace_minutes") or "30"
    if not grace.isdigit() or int(grace) > 24 * 60:
        raise ValidationError(f"grace {grace!r} is not a number of minutes (0–1440)", field="grace_minutes")
    return CheckpointIn(code, shown, start.strftime("%H:%M"), end.strftime("%H:%M"), int(grace))


def import_routes_csv(session: Session, text: str, *, dry_run: bool = False, by: str = "cli") -> ImportResult:
    """Import patrol routes from CSV, one checkpoint per row in route order (see ROUTE_COLUMNS).

    Every row is checked and each bad one reported by line and field; a route is all or nothing (a
    route missing a stop would report that stop missed every day), so a route with any bad row is not
    written and its other rows say why. An existing route code is refused, not changed. The caller
    commits; a dry run rolls back here.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = ROUTE_REQUIRED - set(header)
    if missing:
        raise ValidationError(f"the patrol routes file lacks the column(s) {', '.join(sorted(missing))}",
                              field="header", hint="columns: " + ",".join(ROUTE_COLUMNS))
    routes: dict[str, _RouteRows] = {}
    total = 0
    for line, raw in enumerate(reader, start=2):  # line 1 is the header
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        total += 1
        group = routes.setdefault(row.get("route_code", ""), _RouteRows(row.get("route_code", ""), line))
        group.lines.append(line)
        group.rows.append(row)
    result = ImportResult(kind="patrol", rows=total, imported=0, dry_run=dry_run)
    entry = AuditEntry(actor=by, action="import", entity="patrol")
    session.add(entry)  # first: see registry.import_csv (a SAVEPOINT before any write on SQLite)
    session.flush()
    existing_codes = set(session.exec(select(PatrolCheckpoint.code)).all())
    claimed: dict[str, int] = {}
    for group in routes.values():
        errors = _route_errors(session, group, existing_codes, claimed)
        if errors:
            result.errors.extend(errors)
            continue
        first = group.rows[0]
        savepoint = session.begin_nested()
        try:
            community = session.exec(select(Community).where(Community.code == first["community"])).one()
            create_route(session, code=group.code, name=first["route_name"], community=community.code,
                         lead_staff_id=_lead(session, first.get("lead", ""), community),
                         checkpoints=[_checkpoint(row) for row in group.rows])
        except ValidationError as err:
            savepoint.rollback()
            result.errors.append(RowError(group.first_line, err.field, err.message))
            continue
        savepoint.commit()
        result.imported += len(group.rows)
    result.errors.sort(key=lambda e: e.line)
    if dry_run:
        session.rollback()
        return result
    entry.detail = f"{result.imported} of {result.rows} checkpoint rows, {len(result.errors)} refused"
    session.add(entry)
    session.flush()
    return result


def _route_errors(session: Session, group: _RouteRows, existing_codes: set[str],
                  claimed: dict[str, int]) -> list[RowError]:
    """Every problem of one route's rows, each on its line; rows that are fine say their route was refused."""
    errors: list[RowError] = []
    first = group.rows[0]
    if not CODE.match(group.code):
        errors.append(RowError(group.first_line, "route_code", f"route code {group.code!r} is not 1–32 letters, "
                                                               "digits, - or _"))
    elif session.exec(select(PatrolRoute.id).where(PatrolRoute.code == group.code)).first() is not None:
        errors.append(RowError(group.first_line, "route_code", f"route {group.code} already exists; it is not "
                                                               "changed by an import"))
    community = session.exec(select(Community).where(Community.code == first.get("community", ""))).first()
    if community is None:
        errors.append(RowError(group.first_line, "community", f"no community {first.get('community', '')!r}"))
    elif first.get("lead"):
        try:
            _lead(session, first["lead"], community)
        except ValidationError as err:
            errors.append(RowError(group.first_line, err.field, err.message))
    if not first.get("route_name") or len(first["route_name"]) > 100:
        errors.append(RowError(group.first_line, "route_name", "route name is empty or longer than 100 characters"))
    previous = ""
    for line, row in zip(group.lines, group.rows, strict=True):
        for column in ("route_name", "community", "lead"):
            if line != group.first_line and row.get(column) and row[column] != first.get(column, ""):
                errors.append(RowError(line, column, f"differs from the route's first row (line {group.first_line})"))
        try:
            checkpoint = _checkpoint(row)
        except ValidationError as err:
            errors.append(RowError(line, err.field, err.message))
            continue
        if checkpoint.code in existing_codes:
            errors.append(RowError(line, "checkpoint_code", f"checkpoint {checkpoint.code} already exists"))
        elif checkpoint.code in claimed:
            errors.append(RowError(line, "checkpoint_code",
                                   f"checkpoint {checkpoint.code} is also on line {claimed[checkpoint.code]}"))
        else:
            claimed[checkpoint.code] = line
        if previous and checkpoint.window_start < previous:
            errors.append(RowError(line, "window_start", f"starts before the previous stop ({previous}): list a "
                                                         "route's stops in the order they are walked"))
        previous = checkpoint.window_start
    if errors:
        bad = {e.line for e in errors}
        errors += [RowError(line, "route_code", f"route {group.code} not imported: see line {min(bad)}")
                   for line in group.lines if line not in bad]
    return errors


@dataclass
class RouteSummary:
    """One route for `linli patrol routes`."""

    code: str
    name: str
    community: str
    lead: str
    checkpoints: list[PatrolCheckpoint]


def list_routes(session: Session) -> list[RouteSummary]:
    """Every patrol route with its community, lead and checkpoints in order."""
    out = []
    for route in session.exec(select(PatrolRoute).order_by(col(PatrolRoute.code))).all():
        community = session.get(Community, route.community_id)
        lead = session.get(Staff, route.lead_staff_id) if route.lead_staff_id else None
        stops = session.exec(select(PatrolCheckpoint).where(PatrolCheckpoint.route_id == route.id)
                             .order_by(col(PatrolCheckpoint.seq))).all()
        out.append(RouteSummary(route.code, route.name, community.code if community else "",
                                f"{lead.name} (staff:{lead.id})" if lead else "", list(stops)))
    return out
