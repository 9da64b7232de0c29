"""Residents as each role may see them: masked by default, scoped to a grid worker's grids, reveals audited.

Also the collection page's edits (一次采集，多方使用): a grid worker's change either applies at once
or waits for a community worker's review (审核), and every change, review, reveal and export is
written to the audit log with who, when, what and why — field names, never the values.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from linli.auth import CurrentUser, grid_scope, require
from linli.errors import AccessDenied, NotFound, ValidationError
from linli.models import Building, Grid, Resident, ResidentKind, utcnow
from linli.models.registry import (
    AuditEntry,
    ChangeStatus,
    Household,
    RecordChange,
    ResidentDetail,
    ResidentTag,
    Vehicle,
)
from linli.privacy import mask_id_number, mask_name, mask_phone, mask_plate
from linli.registry import PHONE
from linli.settings import Settings

MIN_REASON = 4
REVEALABLE = {"name", "phone", "id_number"}
EDITABLE = {"phone", "kind", "living_alone", "watch_hours"}


class ResidentRow(BaseModel):
    """One resident as shown: personal fields masked; tags only those the viewer's role may see."""

    id: int
    name: str
    phone: str
    id_number: str
    kind: str
    building: str
    grid: str
    household: str
    living_alone: bool
    tags: list[str]


def audit(session: Session, *, actor: str, action: str, entity: str, entity_id: Any = "", detail: str = "",
          reason: str = "") -> None:
    """Write one audit line (in the caller's transaction)."""
    session.add(AuditEntry(actor=actor, action=action, entity=entity, entity_id=str(entity_id), detail=detail[:1000],
                           reason=reason[:500]))
    session.flush()


def _scoped(session: Session, user: CurrentUser, community_id: int | None = None) -> Any:
    query = (select(Resident, Building, Grid, ResidentDetail, Household)
             .join(Building, col(Building.id) == Resident.building_id)
             .join(Grid, col(Grid.id) == Building.grid_id)
             .outerjoin(ResidentDetail, col(ResidentDetail.resident_id) == Resident.id)
             .outerjoin(Household, col(Household.id) == ResidentDetail.household_id)
             .order_by(col(Resident.id)))
    grids = grid_scope(session, user)
    if grids is not None:
        query = query.where(col(Grid.id).in_(grids or [-1]))
    if community_id is not None:
        query = query.where(Resident.community_id == community_id)
    return query


def residents(session: Session, user: CurrentUser, *, community_id: int | None = None) -> list[ResidentRow]:
    """The residents the user may see (a grid worker: only their grids), personal fields masked."""
    require(user, "view_residents")
    rows = session.exec(_scoped(session, user, community_id)).all()
    ids = [r.id for r, *_ in rows]
    tags: dict[int, list[str]] = {}
    for tag in session.exec(select(ResidentTag).where(col(ResidentTag.resident_id).in_(ids or [-1]))).all():
        if str(user.role) in tag.visible_to.split(","):
            tags.setdefault(tag.resident_id, []).append(tag.tag)
    return [ResidentRow(id=r.id, name=mask_name(r.name), phone=mask_phone(r.phone),
                        id_number=mask_id_number(d.id_number if d else ""), kind=str(r.kind), building=b.code,
                        grid=g.code, household=h.code if h else "", living_alone=bool(d and d.living_alone),
                        tags=tags.get(r.id, []))
            for r, b, g, d, h in rows]


def _resident_in_scope(session: Session, user: CurrentUser, resident_id: int) -> tuple[Resident, ResidentDetail]:
    row = session.exec(_scoped(session, user).where(Resident.id == resident_id)).first()
    if row is None:
        # Out of a grid worker's scope looks the same as not existing: nothing is given away.
        raise NotFound(f"no resident {resident_id} in your grids", hint="pick a resident from the list")
    resident, _b, _g, detail, _h = row
    if detail is None:
        detail = ResidentDetail(resident_id=resident_id)
        session.add(detail)
        session.flush()
    return resident, detail


def _reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) < MIN_REASON:
        raise ValidationError("give a reason (at least 4 characters) for the audit log", field="reason",
                              hint="e.g. 电话回访核实身份")
    return reason


def reveal(session: Session, user: CurrentUser, resident_id: int, field: str, reason: str) -> str:
    """The unmasked value of one personal field, for an authorised role with a reason; audited."""
    require(user, "reveal")
    if field not in REVEALABLE:
        raise ValidationError(f"cannot reveal {field!r}", field="field", hint="one of " + ", ".join(sorted(REVEALABLE)))
    reason = _reason(reason)
    resident, detail = _resident_in_scope(session, user, resident_id)
    value = detail.id_number if field == "id_number" else getattr(resident, field)
    audit(session, actor=user.actor, action="reveal", entity="resident", entity_id=resident_id, detail=field,
          reason=reason)
    return str(value)


def export_csv(session: Session, user: CurrentUser, *, unmasked: bool = False, reason: str = "") -> str:
    """The visible residents as CSV, masked unless the role may export unmasked and gives a reason; audited."""
    require(user, "export")
    if unmasked:
        require(user, "export_unmasked")
        reason = _reason(reason)
    rows = residents(session, user)
    full: dict[int, tuple[Resident, ResidentDetail | None]] = {}
    if unmasked:
        for r, _b, _g, d, _h in session.exec(_scoped(session, user)).all():
            full[r.id] = (r, d)  # type: ignore[index]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "name", "phone", "id_number", "kind", "building", "household", "living_alone"])
    for row in rows:
        name, phone, id_number = row.name, row.phone, row.id_number
        if unmasked:
            resident, detail = full[row.id]
            name, phone, id_number = resident.name, resident.phone, detail.id_number if detail else ""
        writer.writerow([row.id, name, phone, id_number, row.kind, row.building, row.household,
                         "1" if row.living_alone else "0"])
    audit(session, actor=user.actor, action="export", entity="resident",
          detail=f"{len(rows)} rows, {'unmasked' if unmasked else 'masked'}", reason=reason)
    return out.getvalue()


def export_vehicles_csv(session: Session, user: CurrentUser, *, unmasked: bool = False, reason: str = "") -> str:
    """Registered vehicles (of the user's grids) as CSV, plates masked unless the role and a reason allow; audited."""
    require(user, "export")
    if unmasked:
        require(user, "export_unmasked")
        reason = _reason(reason)
    query = (select(Vehicle, Household).join(Household, col(Household.id) == Vehicle.household_id)
             .join(Building, col(Building.id) == Household.building_id).order_by(col(Vehicle.id)))
    grids = grid_scope(session, user)
    if grids is not None:
        query = query.where(col(Building.grid_id).in_(grids or [-1]))
    rows = session.exec(query).all()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["plate", "household", "permit", "permit_until"])
    for vehicle, household in rows:
        writer.writerow([vehicle.plate if unmasked else mask_plate(vehicle.plate), household.code, vehicle.permit,
                         vehicle.permit_until.isoformat() if vehicle.permit_until else ""])
    audit(session, actor=user.actor, action="export", entity="vehicle",
          detail=f"{len(rows)} rows, {'unmasked' if unmasked else 'masked'}", reason=reason)
    return out.getvalue()


def _check_changes(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - EDITABLE
    if unknown or not changes:
        raise ValidationError(f"cannot change {', '.join(sorted(unknown)) or 'nothing'}", field="changes",
                              hint="editable: " + ", ".join(sorted(EDITABLE)))
    clean: dict[str, Any] = {}
    if "phone" in changes:
        phone = str(changes["phone"]).strip()
        if phone and not PHONE.match(phone):
            raise ValidationError("phone is not an 11-digit mobile number", field="phone")
        clean["phone"] = phone
    if "kind" in changes:
        if changes["kind"] not in ResidentKind.__members__:
            raise ValidationError("unknown kind", field="kind", hint="resident, floating or key")
        clean["kind"] = changes["kind"]
    if "living_alone" in changes:
        clean["living_alone"] = bool(changes["living_alone"])
    if "watch_hours" in changes:
        hours = int(changes["watch_hours"])
        if not 1 <= hours <= 24 * 14:
            raise ValidationError("watch hours must be 1–336", field="watch_hours")
        clean["watch_hours"] = hours
    return clean


def _apply(session: Session, change: RecordChange) -> None:
    resident = session.get(Resident, change.resident_id)
    detail = session.get(ResidentDetail, change.resident_id) or ResidentDetail(resident_id=change.resident_id)
    assert resident is not None
    for key, value in json.loads(change.changes).items():
        if key in {"phone", "kind"}:
            setattr(resident, key, value)
        else:
            setattr(detail, key, value)
    detail.updated_at = utcnow()
    session.add_all([resident, detail])


def propose_change(session: Session, user: CurrentUser, resident_id: int, changes: dict[str, Any],
                   *, review: bool) -> RecordChange:
    """Record a grid worker's edit; apply it now, or leave it pending a community worker's review."""
    require(user, "edit_residents")
    _resident_in_scope(session, user, resident_id)
    clean = _check_changes(changes)
    change = RecordChange(resident_id=resident_id, changes=json.dumps(clean, ensure_ascii=False), by=user.actor)
    if not review:
        change.status, change.decided_at = ChangeStatus.applied, utcnow()
        _apply(session, change)
    session.add(change)
    session.flush()
    audit(session, actor=user.actor, action="change", entity="resident", entity_id=resident_id,
          detail=f"{','.join(sorted(clean))} ({change.status})")
    return change


def review_change(session: Session, user: CurrentUser, change_id: int, *, approve: bool) -> RecordChange:
    """A community worker approves (applies) or rejects a pending change; audited."""
    require(user, "review_changes")
    change = session.get(RecordChange, change_id)
    if change is None:
        raise NotFound(f"no change {change_id}")
    if change.status != ChangeStatus.pending:
        raise ValidationError(f"change {change_id} is already {change.status}")
    if change.by == user.actor:
        raise AccessDenied("不能审核自己的修改 / you cannot review your own change", hint="ask a colleague")
    change.status = ChangeStatus.applied if approve else ChangeStatus.rejected
    change.reviewed_by, change.decided_at = user.actor, utcnow()
    if approve:
        _apply(session, change)
    session.add(change)
    audit(session, actor=user.actor, action="review", entity="record_change", entity_id=change_id,
          detail=str(change.status))
    return change


def pending_changes(session: Session, user: CurrentUser) -> list[RecordChange]:
    """Changes waiting for review."""
    require(user, "review_changes")
    return list(session.exec(select(RecordChange).where(RecordChange.status == ChangeStatus.pending)
                             .order_by(col(RecordChange.id))).all())


def file_on_behalf(session: Session, user: CurrentUser, resident_id: int, description: str, *,
                   category: str | None, config: Any) -> str:
    """A grid worker or staff member files a report for a resident (who then follows it and rates it); audited."""
    from linli.loop.intake import ReportIn, file_report
    from linli.models import Building, CaseSource

    require(user, "file_on_behalf")
    resident, _detail = _resident_in_scope(session, user, resident_id)
    building = session.get(Building, resident.building_id) if resident.building_id else None
    source = CaseSource.grid_worker if user.role == "grid_worker" else CaseSource.hotline
    result = file_report(session, ReportIn(description=description, category=category or None,
                                           building=building.code if building else None,
                                           reporter_id=resident_id, source=source), config=config)
    audit(session, actor=user.actor, action="file_on_behalf", entity="case", entity_id=result.case_number,
          detail=f"resident {resident_id}")
    return result.case_number


def deliver_queued(ids: list[int | None], *, settings: Settings,
                   extra_urls: list[str] | None = None) -> dict[str, int]:
    """Deliver notifications queued (and committed) by a step through Apprise; counts by status."""
    from linli.db import session_scope
    from linli.notify import AppriseNotifier, deliver

    counts: dict[str, int] = {}
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return counts
    notifier = AppriseNotifier(timeout_seconds=settings.notify.timeout_seconds)
    with session_scope() as session:
        urls = [*settings.notify.urls, *(extra_urls or [])]
        for row in deliver(session, wanted, notifier=notifier, global_urls=urls):
            counts[str(row.status)] = counts.get(str(row.status), 0) + 1
    return counts


__all__ = ["REVEALABLE", "ResidentRow", "audit", "deliver_queued", "export_csv", "pending_changes",
           "propose_change", "residents", "reveal", "review_change"]
