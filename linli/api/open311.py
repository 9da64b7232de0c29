"""Open311 GeoReport v2 shapes: services, service definitions and service requests, from Linli's tables.

A service is a case category; a service request is a case, its id the public case number.
Open311 knows two statuses: everything not closed, merged or rejected is ``open``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from linli.models import (
    Building,
    Case,
    CaseEvent,
    CasePhoto,
    CaseRouting,
    CaseStatus,
    Category,
    Community,
    PhotoKind,
)
from linli.notify import ESCALATION_LABELS, STATUS_LABELS
from linli.policy import GovernancePolicy
from linli.settings import Language
from linli.storage import ObjectStore

CLOSED = (CaseStatus.closed, CaseStatus.merged, CaseStatus.rejected)
MEDIA_URL_ACTION = "media_url"


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with offset, as Open311 writes times."""
    return moment.isoformat(timespec="seconds") if moment else None


def open311_status(status: CaseStatus | str) -> str:
    """'closed' for closed, merged and rejected cases; 'open' for every other status."""
    return "closed" if CaseStatus(status) in CLOSED else "open"


def service(category: Category, lang: Language, policy: GovernancePolicy) -> dict[str, Any]:
    """One entry of services.json."""
    row = policy.category(category.code)
    keywords = row.keywords if row else [w for w in category.keywords.split(",") if w]
    return {
        "service_code": category.code,
        "service_name": category.name_zh if lang is Language.zh else category.name_en,
        "description": f"{category.name_zh} / {category.name_en}",
        "metadata": True,
        "type": "realtime",
        "keywords": ",".join(keywords),
        "group": category.team,
    }


def definition(session: Session, category: Category) -> dict[str, Any]:
    """services/{code}.json: the attributes a request of this service may carry."""
    buildings = session.exec(select(Building).order_by(Building.code)).all()
    return {
        "service_code": category.code,
        "attributes": [
            {"variable": True, "code": "building", "datatype": "singlevaluelist", "required": False, "order": 1,
             "datatype_description": "Building code (or give lat/long)", "description": "楼栋 / building",
             "values": [{"key": b.code, "name": b.name} for b in buildings]},
            {"variable": True, "code": "resident_id", "datatype": "number", "required": False, "order": 2,
             "datatype_description": "Registered resident id of the reporter (they rate the result)",
             "description": "反映人 / reporter"},
            {"variable": True, "code": "on_behalf_of", "datatype": "string", "required": False, "order": 3,
             "datatype_description": "A grid worker filing for a resident: 'grid_worker'",
             "description": "代报 / filed on behalf of a resident"},
        ],
    }


def request_row(session: Session, case: Case, lang: Language, *, store: ObjectStore | None = None,
                url_seconds: int = 900, extensions: bool = False) -> dict[str, Any]:
    """One service request as Open311 writes it (photos as presigned URLs when a store is given)."""
    category = session.get(Category, case.category_id)
    community = session.get(Community, case.community_id)
    building = session.get(Building, case.building_id) if case.building_id else None
    routing = session.exec(select(CaseRouting).where(CaseRouting.case_id == case.id)).first()
    status = CaseStatus(case.status)
    notes = STATUS_LABELS[status][lang]
    if status == CaseStatus.rejected and case.reject_reason:
        notes += f": {case.reject_reason}"
    if status == CaseStatus.merged and case.merged_into_id:
        original = session.get(Case, case.merged_into_id)
        notes += f" → {original.number if original else case.merged_into_id}"
    media_url = None
    if store is not None:
        photo = session.exec(select(CasePhoto).where(CasePhoto.case_id == case.id, CasePhoto.kind == PhotoKind.before)
                             .order_by(col(CasePhoto.id))).first()
        media_url = store.url(photo.key, url_seconds) if photo else None
    if media_url is None:
        given = session.exec(select(CaseEvent.reason).where(CaseEvent.case_id == case.id,
                                                            CaseEvent.action == MEDIA_URL_ACTION)).first()
        media_url = given or None
    row: dict[str, Any] = {
        "service_request_id": case.number,
        "status": open311_status(status),
        "status_notes": notes,
        "service_name": (category.name_zh if lang is Language.zh else category.name_en) if category else "",
        "service_code": category.code if category else "",
        "description": case.description,
        "agency_responsible": (routing.agency_code or routing.team) if routing else (category.team if category else ""),
        "service_notice": "",
        "requested_datetime": iso(case.created_at),
        "updated_datetime": iso(case.updated_at),
        "expected_datetime": iso(case.due_at),
        "address": " ".join(p for p in ((community.name if community else ""), building.name if building else "") if p),
        "address_id": building.code if building else "",
        "zipcode": "",
        "lat": case.lat if case.lat is not None else (building.lat if building else None),
        "long": case.lon if case.lon is not None else (building.lon if building else None),
        "media_url": media_url,
    }
    if extensions:
        row["extended_attributes"] = extended(session, case, lang, routing)
    return row


def extended(session: Session, case: Case, lang: Language, routing: CaseRouting | None) -> dict[str, Any]:
    """Linli's extension: its own status, priority, escalation level and route."""
    return {
        "linli_status": str(case.status),
        "priority": case.priority,
        "escalation_level": case.escalation_level,
        "escalation_label": ESCALATION_LABELS.get(case.escalation_level, ESCALATION_LABELS[2])[lang],
        "route": routing.route if routing else None,
        "difficulty": routing.difficulty if routing else None,
        "timeline": f"requests/{case.number}/timeline.json",
    }


def timeline(session: Session, case: Case, lang: Language) -> dict[str, Any]:
    """The Linli extension: the whole timeline of a request (who, when, from, to, why)."""
    events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)
                          .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
    return {
        "service_request_id": case.number,
        "status": open311_status(case.status),
        "linli_status": str(case.status),
        "escalation_level": case.escalation_level,
        "escalation_label": ESCALATION_LABELS.get(case.escalation_level, ESCALATION_LABELS[2])[lang],
        "events": [{"at": iso(e.at), "actor": e.actor, "action": e.action,
                    "from": str(e.from_status) if e.from_status else None,
                    "to": str(e.to_status) if e.to_status else None, "reason": e.reason} for e in events],
    }


def photos(session: Session, case: Case, store: ObjectStore, url_seconds: int) -> list[dict[str, Any]]:
    """Before and after photos of a case as presigned URLs that expire."""
    rows = session.exec(select(CasePhoto).where(CasePhoto.case_id == case.id).order_by(col(CasePhoto.id))).all()
    return [{"kind": str(p.kind), "content_type": p.content_type, "size": p.size, "created_at": iso(p.created_at),
             "url": store.url(p.key, url_seconds), "expires_in": url_seconds} for p in rows]
