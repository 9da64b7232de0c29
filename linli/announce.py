"""Community announcements (社区公告): a manager's notice to a community, a building or a group, tracked per resident.

Each recipient gets their own notification through their own channel (a voice/SMS Apprise URL for
residents without smartphones); the loudspeakers are asked to read it out when `broadcast` is set.
Delivery is the notification's status, so the dashboard shows who got it and whose channel failed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from linli.auth import CurrentUser, require
from linli.devices import commands
from linli.devices.commands import Publish
from linli.errors import NotFound, ValidationError
from linli.models import Building, Community, Device, Notification, Resident
from linli.models.registry import Announcement, AnnouncementDelivery, Household, ResidentDetail, Vehicle
from linli.notify import queue, recipient_context
from linli.people import audit

AUDIENCES = ("all", "living_alone", "vehicle_owners")


class Published(BaseModel):
    """A published announcement and the notifications queued for it."""

    announcement_id: int
    recipients: int
    notifications: list[int]


def _recipients(session: Session, community_id: int, building_id: int | None, audience: str) -> list[int]:
    query = select(Resident.id).where(Resident.community_id == community_id)
    if building_id is not None:
        query = query.where(Resident.building_id == building_id)
    if audience == "living_alone":
        query = query.join(ResidentDetail, col(ResidentDetail.resident_id) == Resident.id).where(
            ResidentDetail.living_alone == True)  # noqa: E712
    elif audience == "vehicle_owners":
        owners = (select(ResidentDetail.resident_id).join(Household, col(Household.id) == ResidentDetail.household_id)
                  .join(Vehicle, col(Vehicle.household_id) == Household.id))
        query = query.where(col(Resident.id).in_(owners))
    return [i for i in session.exec(query.order_by(col(Resident.id))).all() if i is not None]


def publish(session: Session, user: CurrentUser, *, title: str, body: str, community: str, building: str = "",
            audience: str = "all", broadcast: bool = False, language: str, templates_dir: Path) -> Published:
    """Record the announcement and queue one notification per recipient; the caller commits, then delivers."""
    require(user, "publish_announcement")
    title, body = title.strip(), body.strip()
    if not title or len(title) > 100 or not body or len(body) > 2000:
        raise ValidationError("an announcement needs a title (≤100) and a text (≤2000)", field="title")
    if audience not in AUDIENCES:
        raise ValidationError(f"unknown audience {audience!r}", field="audience", hint="one of " + ", ".join(AUDIENCES))
    found = session.exec(select(Community).where(Community.code == community)).first()
    if found is None or found.id is None:
        raise NotFound(f"no community {community!r}", hint="e.g. XFL")
    building_id = None
    if building:
        b = session.exec(select(Building).where(Building.code == building,
                                                Building.community_id == found.id)).first()
        if b is None:
            raise NotFound(f"no building {building!r} in {community}")
        building_id = b.id
    row = Announcement(title=title, body=body, community_id=found.id, building_id=building_id, audience=audience,
                       broadcast=broadcast, by=user.actor)
    session.add(row)
    session.flush()
    ids = []
    for resident_id in _recipients(session, found.id, building_id, audience):
        target = f"resident:{resident_id}"
        note = queue(session, kind="announcement", target=target, template=f"announcement.{language}.md.j2",
                     language=language, case_id=None, templates_dir=templates_dir,
                     context={"title": title, "body": body, "community": found.name,
                              "recipient": recipient_context(session, target)})
        session.add(AnnouncementDelivery(announcement_id=row.id, resident_id=resident_id,  # type: ignore[arg-type]
                                         notification_id=note.id))
        ids.append(note.id)
    session.flush()
    audit(session, actor=user.actor, action="announce", entity="announcement", entity_id=row.id,
          detail=f"{audience}, {len(ids)} recipients")
    return Published(announcement_id=row.id, recipients=len(ids), notifications=ids)  # type: ignore[arg-type]


class DeliverySummary(BaseModel):
    """An announcement with its delivery counts by status."""

    id: int
    title: str
    audience: str
    created_at: str
    by_status: dict[str, int]


def deliveries(session: Session, *, community_id: int | None = None, limit: int = 20) -> list[DeliverySummary]:
    """Recent announcements with how many copies were sent, recorded, failed or still pending."""
    query = select(Announcement).order_by(col(Announcement.id).desc()).limit(limit)
    if community_id is not None:
        query = query.where(Announcement.community_id == community_id)
    out = []
    for a in session.exec(query).all():
        counts = session.exec(select(Notification.status, func.count())
                              .join(AnnouncementDelivery, col(AnnouncementDelivery.notification_id) == Notification.id)
                              .where(AnnouncementDelivery.announcement_id == a.id)
                              .group_by(Notification.status)).all()
        out.append(DeliverySummary(id=a.id, title=a.title, audience=a.audience,  # type: ignore[arg-type]
                                   created_at=a.created_at.isoformat(), by_status={str(s): n for s, n in counts}))
    return out


def broadcast(session: Session, publish: Publish, announcement_id: int, *, requested_by: str) -> list[str]:
    """Read the announcement out on the loudspeakers (云播音) of its community or building; command ids sent."""
    row = session.get(Announcement, announcement_id)
    if row is None:
        raise NotFound(f"no announcement {announcement_id}")
    query = select(Device).where(Device.device_type == "loudspeaker", Device.community_id == row.community_id)
    if row.building_id is not None:
        query = query.where(Device.building_id == row.building_id)
    sent = []
    for device in session.exec(query.order_by(col(Device.id))).all():
        command = commands.send(session, publish, device_code=device.code, command="broadcast",
                                args={"text": f"{row.title}。{row.body}"}, requested_by=requested_by)
        sent.append(command.cmd_id)
    return sent
