"""A sample community that lives: residents file reports, staff accept and resolve, residents rate.

Every action goes through the same loop functions the API and the CLI use, and announces its
events on the bus, so the Prefect flows take each case the rest of the way.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import Session, col, select

from linli.db import session_scope
from linli.errors import LinliError
from linli.events import EventBus
from linli.loop import LoopConfig, StepResult
from linli.loop.evaluate import rate
from linli.loop.handle import accept, progress, resolve
from linli.loop.intake import ReportIn, file_report
from linli.models import Building, Case, CaseStatus, Category, Feedback, Resident, utcnow
from linli.models.registry import ResidentDetail
from linli.statemachine import OPEN_STATUSES

log = logging.getLogger(__name__)

# What residents say, per category (zh-CN first; the words feed the keyword suggestion too).
REPORT_TEXTS: dict[str, list[str]] = {
    "facility_repair": ["{b}楼下的路灯坏了，晚上很黑", "{b}电梯异响，老人不敢坐", "小区儿童乐园的秋千断了一根链子",
                        "{b}三楼楼道水管漏水"],
    "sanitation": ["{b}旁边垃圾桶满了两天没人清", "绿化带里有很多落叶和垃圾，味道很臭"],
    "neighbour_dispute": ["{b}楼上装修噪音太大，中午也不停", "邻居长期占用公共楼道堆放杂物，发生纠纷"],
    "public_security": ["{b}附近最近常有陌生人徘徊，担心治安", "车棚里电动车电瓶被偷"],
    "fire_hazard": ["{b}一楼楼道有电动车飞线充电，消防隐患", "{b}消防通道被车辆堵塞"],
    "elderly_care": ["{b}独居老人需要助餐服务", "老人行动不便，希望有人上门陪护"],
    "legal_advice": ["被公司拖欠工资三个月，想咨询律师", "租房合同纠纷，需要法律咨询"],
}
UNHAPPY = ["还是没修好", "处理太慢，问题反复出现", "态度不好"]


@dataclass
class SimulatorPlan:
    """How the simulated community behaves (seconds)."""

    report_every: float = 5.0
    accept_after: float = 1.0
    resolve_after: float = 2.0
    rate_after: float = 1.0
    unhappy_share: float = 0.2
    anonymous_share: float = 0.1
    max_open: int = 30
    seed: int | None = None


@dataclass
class SimulatorStats:
    """What the simulator has done so far."""

    reports: int = 0
    accepted: int = 0
    resolved: int = 0
    rated: int = 0
    errors: list[str] = field(default_factory=list)


class Simulator:
    """Plays residents and staff on a timer; `tick()` does one round, `run()` loops until stopped."""

    def __init__(self, *, engine: object, bus: EventBus, config: LoopConfig, plan: SimulatorPlan) -> None:
        self.engine = engine
        self.bus = bus
        self.config = config
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.stats = SimulatorStats()
        self._last_report = 0.0
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the loop to end after the current round."""
        self._stop.set()

    def run(self, *, interval: float = 0.5) -> None:
        """Tick until stopped."""
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(interval)

    def tick(self) -> None:
        """One round: maybe file a report, then move every case a person is waiting on."""
        now = utcnow().timestamp()
        if now - self._last_report >= self.plan.report_every:
            self._last_report = now
            self._act(self._file_report)
        self._act(self._staff_work)
        self._act(self._volunteer_work)
        self._act(self._residents_rate)

    def _act(self, action: object) -> None:
        try:
            with session_scope(self.engine) as session:  # type: ignore[arg-type]
                results = action(session)  # type: ignore[operator]
            for result in results:
                self.bus.emit(result.events)
        except LinliError as err:  # a refused action is part of life; note it and go on
            self.stats.errors.append(str(err))
            log.warning("simulator: %s", err)

    def _file_report(self, session: Session) -> list[StepResult]:
        open_count = len(session.exec(select(Case.id).where(col(Case.status).in_(list(OPEN_STATUSES)))).all())
        if open_count >= self.plan.max_open:
            return []
        categories = session.exec(select(Category)).all()
        # Residents living alone are left out: a report is a sign of life, and the demo's silent one must stay silent.
        alone = select(ResidentDetail.resident_id).where(ResidentDetail.living_alone == True)  # noqa: E712
        residents = session.exec(select(Resident).where(col(Resident.building_id).is_not(None),
                                                        col(Resident.id).not_in(alone))).all()
        if not categories or not residents:
            return []
        category = self.rng.choice(categories)
        resident = self.rng.choice(residents)
        building = session.get(Building, resident.building_id)
        text = self.rng.choice(REPORT_TEXTS.get(category.code, ["{b}附近有问题需要处理"]))
        anonymous = self.rng.random() < self.plan.anonymous_share
        report = ReportIn(
            description=text.format(b=building.name if building else ""), category=category.code,
            building=building.code if building else None, reporter_id=None if anonymous else resident.id,
            lat=building.lat if building else None, lon=building.lon if building else None,
        )
        result = file_report(session, report, config=self.config)
        self.stats.reports += 1
        return [result]

    def _staff_work(self, session: Session) -> list[StepResult]:
        now = utcnow()
        results: list[StepResult] = []
        ready = now - timedelta(seconds=self.plan.accept_after)
        for case in session.exec(select(Case).where(Case.status == CaseStatus.dispatched,
                                                    col(Case.dispatched_at) <= ready)).all():
            if case.assignee_id is not None:
                results.append(accept(session, case.id or 0, staff_id=case.assignee_id))
                progress(session, case.id or 0, staff_id=case.assignee_id, note="已到现场处理 / on site")
                self.stats.accepted += 1
        done = now - timedelta(seconds=self.plan.resolve_after)
        for case in session.exec(select(Case).where(Case.status == CaseStatus.in_progress,
                                                    col(Case.updated_at) <= done)).all():
            if case.assignee_id is not None:
                results.append(resolve(session, case.id or 0, staff_id=case.assignee_id, note="已处理完毕 / fixed"))
                self.stats.resolved += 1
        return results

    def _volunteer_work(self, session: Session) -> list[StepResult]:
        """Volunteers claim pooled cases of their skills (抢单), then accept and resolve them like staff."""
        from linli.loop import work
        from linli.models import CaseRouting, Volunteer

        now = utcnow()
        results: list[StepResult] = []
        ready = now - timedelta(seconds=self.plan.accept_after)
        pooled = session.exec(select(Case, CaseRouting).join(CaseRouting, col(CaseRouting.case_id) == Case.id)
                              .where(Case.status == CaseStatus.dispatched, col(Case.assignee_id).is_(None),
                                     col(Case.dispatched_at) <= ready)).all()
        for case, routing in pooled:
            actor = f"volunteer:{routing.volunteer_id}"
            if routing.volunteer_id is None:
                code = session.get(Category, case.category_id).code  # type: ignore[union-attr]
                takers = [v for v in session.exec(select(Volunteer).where(Volunteer.community_id == case.community_id))
                          if code in v.skills.split(",") and work.active_claims(session, v.id or 0) < v.max_open_claims]
                if not takers or routing.pool_until is None or routing.pool_until <= now:
                    continue
                volunteer = self.rng.choice(takers)
                results.append(work.claim(session, case.id or 0, volunteer_id=volunteer.id or 0, config=self.config))
                actor = f"volunteer:{volunteer.id}"
            results.append(work.accept(session, case.id or 0, actor=actor))
            work.progress(session, case.id or 0, actor=actor, note="志愿者已到场 / volunteer on site")
            self.stats.accepted += 1
        done = now - timedelta(seconds=self.plan.resolve_after)
        claimed = session.exec(select(Case, CaseRouting).join(CaseRouting, col(CaseRouting.case_id) == Case.id)
                               .where(Case.status == CaseStatus.in_progress, col(Case.assignee_id).is_(None),
                                      col(CaseRouting.volunteer_id).is_not(None), col(Case.updated_at) <= done)).all()
        for case, routing in claimed:
            results.append(work.resolve(session, case.id or 0, actor=f"volunteer:{routing.volunteer_id}",
                                        note="已帮忙处理 / helped"))
            self.stats.resolved += 1
        return results

    def _residents_rate(self, session: Session) -> list[StepResult]:
        ready = utcnow() - timedelta(seconds=self.plan.rate_after)
        results: list[StepResult] = []
        waiting = session.exec(select(Case).where(Case.status == CaseStatus.resolved,
                                                  col(Case.reporter_id).is_not(None),
                                                  col(Case.rating_requested_at) <= ready)).all()
        for case in waiting:
            rated = session.exec(select(Feedback.id).where(Feedback.case_id == case.id,
                                                           col(Feedback.at) >= case.resolved_at)).first()
            if rated is not None or case.reporter_id is None:
                continue
            unhappy = self.rng.random() < self.plan.unhappy_share
            rating = self.rng.choice([1, 2]) if unhappy else self.rng.choice([4, 5, 5])
            comment = self.rng.choice(UNHAPPY) if unhappy else "谢谢，处理得很及时"
            results.append(rate(session, case.id or 0, resident_id=case.reporter_id, rating=rating, comment=comment))
            self.stats.rated += 1
        return results
