"""Test data made through the real query and loop functions."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from linli.loop import LoopConfig
from linli.loop.intake import ReportIn, file_report
from linli.models import Case, Resident
from linli.seed import seed_sample
from linli.settings import REPO_ROOT

CONFIG = LoopConfig(language="zh", templates_dir=REPO_ROOT / "templates")


def seeded(session: Session) -> None:
    """The sample street office, committed."""
    seed_sample(session)
    session.commit()


def a_resident(session: Session, building_code: str = "XFL-B1") -> Resident:
    """A resident of the given sample building."""
    from linli.models import Building

    building = session.exec(select(Building).where(Building.code == building_code)).one()
    return session.exec(select(Resident).where(Resident.building_id == building.id)).first()  # type: ignore[return-value]


def a_case(session: Session, *, text: str = "3栋楼下路灯坏了", category: str = "facility_repair",
           building: str = "XFL-B1", reporter: Resident | None = None, templates: Path | None = None) -> Case:
    """A freshly reported case (committed), filed like a resident would."""
    reporter = reporter or a_resident(session, building)
    result = file_report(session, ReportIn(description=text, category=category, building=building,
                                           reporter_id=reporter.id), config=CONFIG)
    session.commit()
    case = session.get(Case, result.case_id)
    assert case is not None
    return case
