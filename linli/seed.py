"""A sample street office: two communities with grids, buildings, people and the seeds' categories."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from linli.models import (
    Building,
    Category,
    Community,
    Grid,
    Resident,
    ResidentKind,
    Staff,
    StaffRole,
    StreetOffice,
    Volunteer,
)

# code, 中文, English, team, SLA hours, warning hours, keywords (edited by admins later)
CATEGORIES: list[tuple[str, str, str, str, float, float, str]] = [
    ("facility_repair", "设施报修", "Facility repair", "property", 48, 8,
     "坏,修,漏水,路灯,电梯,秋千,门禁,水管,broken,repair,leak,light,elevator,swing"),
    ("sanitation", "环境卫生", "Environment & sanitation", "property", 24, 4,
     "垃圾,卫生,脏,臭,清扫,落叶,garbage,trash,dirty,smell,litter"),
    ("neighbour_dispute", "邻里纠纷", "Neighbour dispute", "community", 72, 12,
     "纠纷,吵架,噪音,矛盾,占用,dispute,noise,quarrel"),
    ("public_security", "治安隐患", "Public security hazard", "security", 24, 4,
     "治安,可疑,偷,盗,陌生人,suspicious,theft,stranger"),
    ("fire_hazard", "消防隐患", "Fire hazard", "security", 12, 2,
     "消防,通道,堵塞,电动车,充电,飞线,fire,exit,blocked,charging"),
    ("elderly_care", "养老服务", "Elderly care", "community", 48, 8,
     "老人,养老,助餐,独居,陪护,elderly,care,meal"),
    ("legal_advice", "法律咨询", "Legal advice", "community", 120, 24,
     "法律,律师,合同,欠薪,legal,lawyer,contract,wage"),
]

COMMUNITIES = [("XFL", "幸福里社区", 31.7700, 117.2800), ("HPY", "和平苑社区", 31.7800, 117.3000)]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ["建国", "秀英", "伟", "芳", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超"]


@dataclass(frozen=True)
class SeedSummary:
    """What `seed_sample` created (zero counts when it was already there)."""

    communities: int
    buildings: int
    residents: int
    staff: int
    volunteers: int
    categories: int


def _name(i: int) -> str:
    return SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7) % len(GIVEN)]


def _phone(i: int) -> str:
    return f"13{(i * 37) % 10}{(5550000 + i * 7919) % 10_000_000:07d}"[:11].ljust(11, "0")


def seed_categories(session: Session) -> int:
    """Add any of the seeds' categories that are missing; return how many were added."""
    existing = set(session.exec(select(Category.code)).all())
    added = 0
    for code, zh, en, team, sla, warn, keywords in CATEGORIES:
        if code not in existing:
            session.add(Category(code=code, name_zh=zh, name_en=en, team=team, sla_hours=sla,
                                 warning_hours=warn, keywords=keywords))
            added += 1
    return added


def seed_sample(session: Session, *, buildings_per_grid: int = 2, residents_per_building: int = 3) -> SeedSummary:
    """Create the sample street office unless it exists; the caller commits."""
    categories = seed_categories(session)
    if session.exec(select(StreetOffice).where(StreetOffice.code == "BHJD")).first():
        return SeedSummary(0, 0, 0, 0, 0, categories)
    office = StreetOffice(code="BHJD", name="滨湖街道")
    session.add(office)
    session.flush()
    counts = {"buildings": 0, "residents": 0, "staff": 0, "volunteers": 0}
    person = 0
    # Street and district levels: who a case escalates to.
    session.add(Staff(name="街道督办 " + _name(90), phone=_phone(90), role=StaffRole.street_officer,
                      team="street_office", level=1))
    session.add(Staff(name="区职能部门 " + _name(91), phone=_phone(91), role=StaffRole.district_officer,
                      team="district", level=2))
    counts["staff"] += 2
    for code, name, lat0, lon0 in COMMUNITIES:
        community = Community(code=code, name=name, street_office_id=office.id)
        session.add(community)
        session.flush()
        for team in ("property", "community", "security"):
            session.add(Staff(community_id=community.id, name=_name(person), phone=_phone(person),
                              role=StaffRole.team_lead, team=team, level=0))
            person += 1
            for _ in range(2):
                role = StaffRole.property_handler if team == "property" else StaffRole.community_worker
                session.add(Staff(community_id=community.id, name=_name(person), phone=_phone(person),
                                  role=role, team=team, level=0))
                person += 1
            counts["staff"] += 3
        for g in range(1, 3):
            worker = Staff(community_id=community.id, name=_name(person), phone=_phone(person),
                           role=StaffRole.grid_worker, team="community", level=0)
            person += 1
            counts["staff"] += 1
            session.add(worker)
            session.flush()
            grid = Grid(code=f"{code}-G{g}", name=f"{name}第{g}网格", community_id=community.id,
                        grid_worker_id=worker.id)
            session.add(grid)
            session.flush()
            for b in range(1, buildings_per_grid + 1):
                number = (g - 1) * buildings_per_grid + b
                building = Building(code=f"{code}-B{number}", name=f"{number}栋", community_id=community.id,
                                    grid_id=grid.id, lat=lat0 + 0.001 * number, lon=lon0 + 0.0012 * g)
                session.add(building)
                session.flush()
                counts["buildings"] += 1
                for r in range(residents_per_building):
                    kind = ResidentKind.key if r == 2 and number % 3 == 0 else ResidentKind.resident
                    session.add(Resident(community_id=community.id, building_id=building.id,
                                         name=_name(person), phone=_phone(person), kind=kind))
                    person += 1
                    counts["residents"] += 1
        for v in range(3):
            skills = ["elderly_care,sanitation", "legal_advice", "facility_repair,neighbour_dispute"][v]
            session.add(Volunteer(community_id=community.id, name=_name(person), phone=_phone(person),
                                  skills=skills))
            person += 1
            counts["volunteers"] += 1
    session.flush()
    return SeedSummary(len(COMMUNITIES), counts["buildings"], counts["residents"], counts["staff"],
                       counts["volunteers"], categories)
