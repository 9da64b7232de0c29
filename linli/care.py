"""Elderly-care watch (居家养老): residents living alone who have shown no sign of life for N hours.

A sign of life is the home's door magnet opening or closing, an access record with one of their
credentials, a report they filed — or the last welfare check itself (so one silence opens one
check). Silence past the resident's own hours (default from the settings) opens a welfare-check
case assigned straight to the grid worker of their building's grid, who is told (also by voice
when a voice channel is configured); family contacts are told too. Run by the care-watch DAG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from linli.loop import LoopConfig
from linli.loop.assess import assess, receive
from linli.loop.common import queue_notice
from linli.loop.intake import ReportIn, file_report
from linli.models import (
    AccessRecord,
    Assignment,
    Building,
    Case,
    CaseSource,
    CaseStatus,
    DeviceEvent,
    Grid,
    Resident,
    utcnow,
)
from linli.models.registry import AccessCredential, FamilyContact, ResidentDetail, WelfareCheck
from linli.notify import format_local
from linli.privacy import mask_name
from linli.statemachine import OPEN_STATUSES, transition

DOOR_EVENTS = ("opened", "closed")


class SilentResident(BaseModel):
    """A resident living alone with no activity for at least their watch hours."""

    resident_id: int
    hours: int
    last_activity_at: datetime


def last_activity(session: Session, detail: ResidentDetail) -> datetime:
    """The latest sign of life of one resident (their registration's last update when there is none)."""
    candidates: list[datetime | None] = [detail.updated_at]
    if detail.door_device_id is not None:
        candidates.append(session.exec(select(func.max(DeviceEvent.ts)).where(
            DeviceEvent.device_id == detail.door_device_id, col(DeviceEvent.event).in_(DOOR_EVENTS))).one())
    candidates.append(session.exec(select(func.max(AccessRecord.ts)).join(
        AccessCredential, (col(AccessCredential.reference) == AccessRecord.credential_ref)
        & (col(AccessCredential.method) == AccessRecord.method))
        .where(AccessCredential.resident_id == detail.resident_id)).one())
    candidates.append(session.exec(select(func.max(Case.created_at)).where(
        Case.reporter_id == detail.resident_id)).one())
    candidates.append(session.exec(select(func.max(WelfareCheck.opened_at)).where(
        WelfareCheck.resident_id == detail.resident_id)).one())
    return max(c for c in candidates if c is not None)


def find_silent(session: Session, *, now: datetime, default_hours: int) -> list[SilentResident]:
    """Residents living alone, silent for their hours, without a welfare check still open."""
    open_checks = set(session.exec(select(WelfareCheck.resident_id).join(Case, col(Case.id) == WelfareCheck.case_id)
                                   .where(col(Case.status).in_(OPEN_STATUSES))).all())
    silent = []
    for detail in session.exec(select(ResidentDetail).where(ResidentDetail.living_alone == True)  # noqa: E712
                               .order_by(col(ResidentDetail.resident_id))).all():
        if detail.resident_id in open_checks or detail.anonymised_at is not None:
            continue
        hours = detail.watch_hours or default_hours
        last = last_activity(session, detail)
        if now - last >= timedelta(hours=hours):
            silent.append(SilentResident(resident_id=detail.resident_id, hours=hours, last_activity_at=last))
    return silent


@dataclass
class WelfareOutcome:
    """Cases opened by one watch run, with the notifications to deliver (voice ones separately)."""

    cases: list[str] = field(default_factory=list)
    notifications: list[int] = field(default_factory=list)
    voice: list[int] = field(default_factory=list)


def open_welfare_checks(session: Session, silent: list[SilentResident], *, config: LoopConfig,
                        now: datetime | None = None) -> WelfareOutcome:
    """One welfare-check case per silent resident, assigned to their grid worker; caller commits."""
    now = now or utcnow()
    outcome = WelfareOutcome()
    for item in silent:
        resident = session.get(Resident, item.resident_id)
        if resident is None or resident.building_id is None:
            continue
        building = session.get(Building, resident.building_id)
        grid = session.get(Grid, building.grid_id) if building else None
        assert building is not None
        text = f"居家养老关爱：{mask_name(resident.name)} 独居，已 {item.hours} 小时无开门或其他活动记录，请上门探访。"
        filed = file_report(session, ReportIn(description=text, category="elderly_care", building=building.code,
                                              source=CaseSource.care_watch), config=config)
        case = session.get(Case, filed.case_id)
        assert case is not None
        session.add(WelfareCheck(resident_id=item.resident_id, case_id=filed.case_id,
                                 last_activity_at=item.last_activity_at, opened_at=now))
        receive(session, filed.case_id, config=config)  # no reporter: no receipt, just to assessing
        assess(session, filed.case_id, config=config)  # priority and deadline as for any case
        extra = {"resident": mask_name(resident.name), "hours": item.hours,
                 "last_activity": format_local(item.last_activity_at, config.timezone)}
        if grid is not None and grid.grid_worker_id is not None:
            worker = grid.grid_worker_id
            session.add(Assignment(case_id=case.id, staff_id=worker, reason="care watch: the building's grid worker"))
            case.assignee_id = worker
            transition(session, case, CaseStatus.dispatched, actor="flow:care-watch",
                       reason=f"welfare check for the grid worker staff:{worker}")
            outcome.voice.append(queue_notice(session, config, case, kind="welfare_check", target=f"staff:{worker}",
                                              extra=extra))
        for contact in session.exec(select(FamilyContact).where(FamilyContact.resident_id == item.resident_id)).all():
            outcome.notifications.append(queue_notice(session, config, case, kind="welfare_family",
                                                      target=f"family:{contact.id}", extra=extra))
        outcome.cases.append(case.number)
    session.flush()
    return outcome
