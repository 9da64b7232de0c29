"""发现 / 上报 — intake: a report becomes a case, with its photo, in one unit of work."""

from __future__ import annotations

import math
import uuid
from typing import Annotated

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlmodel import Session, select

from linli.errors import ValidationError
from linli.loop.common import LoopConfig, StepResult
from linli.models import Building, Case, CasePhoto, CaseSource, Category, Community, PhotoKind, Resident, utcnow
from linli.photos import photo_key, prepare_photo
from linli.policy import GovernancePolicy
from linli.policy import suggest_category as policy_suggestion
from linli.statemachine import record
from linli.storage import ObjectStore


class ReportIn(BaseModel):
    """A report as it arrives from a resident, a grid worker, the hotline or the CLI."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    description: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        description="What is wrong, in the reporter's words."
    )
    category: str | None = Field(default=None, description="Category code; suggested from the text if empty.")
    lat: float | None = Field(default=None, ge=-90, le=90, description="Latitude (WGS84).")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Longitude (WGS84).")
    building: str | None = Field(default=None, description="Building code, e.g. XFL-B3.")
    community: str | None = Field(default=None, description="Community code, if no building or location.")
    reporter_id: int | None = Field(default=None, description="The resident who reports (rates the result).")
    reporter_phone: str | None = Field(default=None, description="Find the reporter by phone instead.")
    source: CaseSource = CaseSource.resident


def parse_report(data: dict[str, object]) -> ReportIn:
    """Validate raw report fields, naming each problem in a ValidationError."""
    try:
        report = ReportIn.model_validate(data)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "report"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'report'}: {e['msg']}" for e in err.errors()
        )
        raise ValidationError(f"bad report — {problems}", field=where,
                              hint="a report needs a description; lat in [-90, 90], lon in [-180, 180]") from err
    if (report.lat is None) != (report.lon is None):
        raise ValidationError("bad report — give both lat and lon, or neither", field="lat",
                              hint="coordinates come in pairs")
    if report.lat is not None and report.lon is not None and not (math.isfinite(report.lat)
                                                                   and math.isfinite(report.lon)):
        raise ValidationError("bad report — coordinates must be finite numbers", field="lat")
    return report


def suggest_category(session: Session, text: str) -> Category | None:
    """The category whose keywords occur most in `text` (ties: the first defined)."""
    lowered = text.lower()
    best, best_hits = None, 0
    for category in session.exec(select(Category).order_by(Category.id)).all():
        words = [w.strip().lower() for w in category.keywords.split(",") if w.strip()]
        hits = sum(1 for word in words if word in lowered)
        if hits > best_hits:
            best, best_hits = category, hits
    return best


def _category(session: Session, report: ReportIn, policy: GovernancePolicy | None = None) -> Category:
    if report.category:
        category = session.exec(select(Category).where(Category.code == report.category)).first()
        if category is None:
            codes = ", ".join(session.exec(select(Category.code).order_by(Category.id)).all())
            raise ValidationError(f"unknown category '{report.category}'", field="category",
                                  hint=f"use one of: {codes}")
        return category
    # The policy's keyword rules (edited by admins) first, then the category table's keywords.
    code = policy_suggestion(policy, report.description) if policy is not None else None
    suggested = session.exec(select(Category).where(Category.code == code)).first() if code else None
    suggested = suggested or suggest_category(session, report.description)
    if suggested is None:
        codes = ", ".join(session.exec(select(Category.code).order_by(Category.id)).all())
        raise ValidationError("no category given and none recognised in the text", field="category",
                              hint=f"name one of: {codes}")
    return suggested


def _place(session: Session, report: ReportIn) -> tuple[Community, Building | None]:
    building = None
    if report.building:
        building = session.exec(select(Building).where(Building.code == report.building)).first()
        if building is None:
            raise ValidationError(f"unknown building '{report.building}'", field="building",
                                  hint="use a building code such as XFL-B1 (see `linli seed` output)")
    if building is None and report.lat is not None and report.lon is not None:
        building = nearest_building(session, report.lat, report.lon)
    if building is not None:
        community = session.get(Community, building.community_id)
    elif report.community:
        community = session.exec(select(Community).where(Community.code == report.community)).first()
        if community is None:
            raise ValidationError(f"unknown community '{report.community}'", field="community")
    else:
        communities = session.exec(select(Community)).all()
        if len(communities) != 1:
            raise ValidationError("say where: give a building, coordinates or a community", field="community",
                                  hint="this installation serves several communities")
        community = communities[0]
    assert community is not None
    return community, building


def nearest_building(session: Session, lat: float, lon: float, max_metres: float = 2000) -> Building | None:
    """The closest building within `max_metres` of a point, if any."""
    best, best_d = None, max_metres
    for building in session.exec(select(Building)).all():
        d = distance_m(lat, lon, building.lat, building.lon)
        if d <= best_d:
            best, best_d = building, d
    return best


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def _reporter(session: Session, report: ReportIn) -> Resident | None:
    if report.reporter_id is not None:
        resident = session.get(Resident, report.reporter_id)
        if resident is None:
            raise ValidationError(f"no resident with id {report.reporter_id}", field="reporter",
                                  hint="give a registered resident's id or phone, or report anonymously")
        return resident
    if report.reporter_phone:
        resident = session.exec(select(Resident).where(Resident.phone == report.reporter_phone)).first()
        if resident is None:
            raise ValidationError("no resident with that phone number", field="reporter",
                                  hint="check the number, or report anonymously")
        return resident
    return None


def file_report(
    session: Session, report: ReportIn, *, config: LoopConfig, store: ObjectStore | None = None,
    photo: bytes | None = None, max_photo_bytes: int = 10 * 1024 * 1024,
) -> StepResult:
    """Record a report as a new case (status reported) with its photo; the caller commits.

    Everything is checked before anything is written; the photo goes to the store last, so a
    failure anywhere leaves neither a case row nor an object behind.
    """
    prepared = prepare_photo(photo, max_bytes=max_photo_bytes) if photo is not None else None
    if prepared is not None and store is None:
        raise ValidationError("a photo was given but no object store is configured", field="photo")
    category = _category(session, report, config.policy)
    community, building = _place(session, report)
    reporter = _reporter(session, report)
    now = utcnow()
    case = Case(
        number=f"tmp-{uuid.uuid4().hex[:24]}", community_id=community.id, category_id=category.id,
        building_id=building.id if building else None, grid_id=building.grid_id if building else None,
        source=report.source, description=report.description, lat=report.lat, lon=report.lon,
        reporter_id=reporter.id if reporter else None, reporter_name=reporter.name if reporter else "",
        created_at=now, updated_at=now,
    )
    session.add(case)
    session.flush()
    assert case.id is not None
    case.number = case_number(case.id, now)
    record(session, case, actor=_actor(report, reporter), action="reported",
           reason=f"{category.code} via {report.source}")
    result = StepResult(case.id, case.number, str(case.status), detail=category.code)
    if prepared is not None and store is not None:
        key = photo_key(case.number, PhotoKind.before, prepared.extension)
        session.add(CasePhoto(case_id=case.id, kind=PhotoKind.before, key=key,
                              content_type=prepared.content_type, size=len(prepared.data)))
        session.flush()
        store.put(key, prepared.data, prepared.content_type)
    result.announce("reported", category=category.code)
    return result


def case_number(case_id: int, when: object) -> str:
    """The public case number: LL-<yyyymmdd>-<id>, readable over the phone."""
    return f"LL-{when:%Y%m%d}-{case_id:06d}"


def _actor(report: ReportIn, reporter: Resident | None) -> str:
    return f"resident:{reporter.id}" if reporter else str(report.source)
