"""The governance loop on a real database: policy rules, merge, reject, routing, claims, fallback, escalation."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from linli.errors import ConfigurationError, Conflict, ValidationError
from linli.loop.assess import assess, receive, reject
from linli.loop.dispatch import dispatch
from linli.loop.evaluate import evaluate, rate
from linli.loop.intake import ReportIn, file_report
from linli.loop.sla import sweep
from linli.loop.work import accept, claim, progress, reassign, resolve
from linli.models import (
    Assignment,
    Case,
    CaseEvent,
    CaseRouting,
    CaseStatus,
    Grid,
    Notification,
    NotifyRoute,
    Staff,
    StaffRole,
    Volunteer,
    VolunteerClaim,
    utcnow,
)
from linli.policy import (
    DifficultyRule,
    EscalationLevel,
    GovernancePolicy,
    PriorityRule,
    RejectRule,
    Route,
    default_policy,
    difficulty_for,
    parse_policy,
    priority_for,
    route_for,
    suggest_category,
)
from tests.factories import CONFIG, a_case, a_resident, seeded


def _policy(**changes: object) -> GovernancePolicy:
    return parse_policy({**default_policy().model_dump(), **changes})


def _assessed(session: Session, case: Case, config=CONFIG) -> Case:  # type: ignore[no-untyped-def]
    for step in (receive, assess, dispatch):
        step(session, case.id, config=config)
        session.commit()
    session.refresh(case)
    return case


def _kinds(session: Session, case_id: int) -> list[str]:
    return list(session.exec(select(Notification.kind).where(Notification.case_id == case_id)
                             .order_by(col(Notification.id))).all())


def _actions(session: Session, case_id: int) -> list[str]:
    return list(session.exec(select(CaseEvent.action).where(CaseEvent.case_id == case_id)
                             .order_by(col(CaseEvent.id))).all())


# --- the policy itself -------------------------------------------------------------------------


def test_an_invalid_policy_is_refused_naming_every_problem() -> None:
    data = default_policy().model_dump()
    data["categories"][0]["warning_hours"] = 100  # above its 48 h SLA
    data["claim"]["max_open_claims"] = 0
    data["escalation"] = [{"level": 0, "name_zh": "社区", "name_en": "community"},
                          {"level": 2, "name_zh": "区", "name_en": "district"}]
    with pytest.raises(ConfigurationError) as err:
        parse_policy(data)
    message = str(err.value)
    assert "categories.0" in message and "warning_hours (100) must be less than sla_hours (48)" in message
    assert "claim.max_open_claims" in message
    assert "nothing was changed" in message


def test_a_policy_naming_an_unknown_agency_or_a_gap_in_the_chain_is_refused() -> None:
    data = default_policy().model_dump()
    data["agencies"] = []
    with pytest.raises(ConfigurationError, match="names agency 'legal_aid', which is not in agencies"):
        parse_policy(data)
    data = default_policy().model_dump()
    data["escalation"] = [{"level": 1, "name_zh": "街道", "name_en": "street"}]
    with pytest.raises(ConfigurationError, match="escalation levels must be 0, 1, 2"):
        parse_policy(data)


def test_rules_are_tables_evaluated_in_order() -> None:
    policy = _policy(
        priority_rules=[PriorityRule(priority=3, keywords=["建议"]).model_dump(),
                        PriorityRule(priority=1, categories=["fire_hazard"]).model_dump()],
        difficulty_rules=[DifficultyRule(difficulty=3, keywords=["高空", "大面积"]).model_dump()],
    )
    assert priority_for(policy, "sanitation", "一个小建议") == 3
    assert priority_for(policy, "fire_hazard", "楼道堆物") == 1
    assert priority_for(policy, "sanitation", "垃圾") == 2
    assert difficulty_for(policy, "sanitation", "大面积积水") == 3
    assert difficulty_for(policy, "sanitation", "垃圾") == 2
    # A hard case skips the volunteer pool.
    assert route_for(policy, "sanitation", 1) == Route.volunteer_pool
    assert route_for(policy, "sanitation", 3) == Route.staff_team
    assert route_for(policy, "legal_advice", 1) == Route.external_agency
    assert suggest_category(policy, "楼下垃圾很臭") == "sanitation"


# --- assess ------------------------------------------------------------------------------------


def test_policy_keywords_suggest_the_category_at_intake(session: Session) -> None:
    seeded(session)
    policy = default_policy().model_copy(deep=True)
    policy.category("sanitation").keywords.append("小广告")  # type: ignore[union-attr]
    result = file_report(session, ReportIn(description="单元门上贴满了小广告", building="XFL-B1"),
                         config=CONFIG.with_policy(policy))
    session.commit()
    assert result.detail == "sanitation"


def test_a_report_within_the_radius_and_window_is_merged_into_the_open_case(session: Session) -> None:
    seeded(session)
    first_reporter, second_reporter = a_resident(session, "XFL-B1"), a_resident(session, "XFL-B2")
    first = file_report(session, ReportIn(description="路灯坏了", category="facility_repair", lat=31.771,
                                          lon=117.2812, reporter_id=first_reporter.id), config=CONFIG)
    session.commit()
    original = _assessed(session, session.get(Case, first.case_id))  # type: ignore[arg-type]
    assert original.status == CaseStatus.dispatched
    # ~30 m away, same category: one problem.
    second = file_report(session, ReportIn(description="这边路灯不亮", category="facility_repair", lat=31.7712,
                                           lon=117.2814, reporter_id=second_reporter.id), config=CONFIG)
    # ~1 km away: a different problem.
    third = file_report(session, ReportIn(description="路灯坏了", category="facility_repair", lat=31.78,
                                          lon=117.2812, reporter_id=second_reporter.id), config=CONFIG)
    session.commit()
    duplicate = _assessed(session, session.get(Case, second.case_id))  # type: ignore[arg-type]
    other = _assessed(session, session.get(Case, third.case_id))  # type: ignore[arg-type]
    assert duplicate.status == CaseStatus.merged and duplicate.merged_into_id == original.id
    assert other.status == CaseStatus.dispatched
    assert "merged_in" in _actions(session, original.id)
    told = session.exec(select(Notification).where(Notification.case_id == duplicate.id,
                                                   Notification.kind == "merged")).one()
    assert told.target == f"resident:{second_reporter.id}" and original.number in told.body


def test_a_zero_window_turns_merging_off(session: Session) -> None:
    seeded(session)
    config = CONFIG.with_policy(_policy(duplicate={"radius_m": 100, "window_hours": 0}))
    ids = [file_report(session, ReportIn(description="路灯坏了", category="facility_repair", lat=31.771,
                                         lon=117.2812), config=config).case_id for _ in range(2)]
    session.commit()
    statuses = [_assessed(session, session.get(Case, i), config).status for i in ids]  # type: ignore[arg-type]
    assert statuses == [CaseStatus.dispatched, CaseStatus.dispatched]


def test_reject_rules_and_manual_rejection_give_the_reporter_the_reason(session: Session) -> None:
    seeded(session)
    config = CONFIG.with_policy(_policy(reject_rules=[RejectRule(keywords=["广告推销"],
                                                                 reason="商业推销不属于社区事务").model_dump()]))
    case = a_case(session, text="有人在群里发广告推销", category="neighbour_dispute")
    case = _assessed(session, case, config)
    assert case.status == CaseStatus.rejected and case.reject_reason == "商业推销不属于社区事务"
    assert "rejected" in _kinds(session, case.id)
    manual = a_case(session, text="隔壁小区的事")
    with pytest.raises(ValidationError, match="needs a reason"):
        reject(session, manual, reason=" ", actor="staff:1", config=CONFIG)
    reject(session, manual, reason="不在本社区", actor="staff:1", config=CONFIG)
    session.commit()
    assert manual.status == CaseStatus.rejected


# --- dispatch: pool, claims, fallback, agency, reassign ----------------------------------------


def _pool_case(session: Session, config=CONFIG) -> Case:  # type: ignore[no-untyped-def]
    case = _assessed(session, a_case(session, text="楼下垃圾没人清", category="sanitation"), config)
    routing = session.exec(select(CaseRouting).where(CaseRouting.case_id == case.id)).one()
    assert routing.route == "volunteer_pool" and routing.pool_until is not None
    return case


def _sanitation_volunteers(session: Session, community_id: int) -> list[Volunteer]:
    return [v for v in session.exec(select(Volunteer).where(Volunteer.community_id == community_id)
                                    .order_by(Volunteer.id)).all() if "sanitation" in v.skills]


def test_a_pool_case_is_offered_to_volunteers_with_the_skill_and_claimed(session: Session) -> None:
    seeded(session)
    case = _pool_case(session)
    assert case.status == CaseStatus.dispatched and case.assignee_id is None
    volunteers = _sanitation_volunteers(session, case.community_id)
    offers = session.exec(select(Notification.target).where(Notification.case_id == case.id,
                                                            Notification.kind == "offer")).all()
    assert sorted(offers) == sorted(f"volunteer:{v.id}" for v in volunteers)
    volunteer = volunteers[0]
    result = claim(session, case.number, volunteer_id=volunteer.id, config=CONFIG)
    session.commit()
    assert [e.name for e in result.events] == ["linli.case.claimed"]
    accept(session, case.number, actor=f"volunteer:{volunteer.id}")
    progress(session, case.number, actor=f"volunteer:{volunteer.id}", note="已联系保洁")
    resolve(session, case.number, actor=f"volunteer:{volunteer.id}", note="清理干净了")
    session.commit()
    session.refresh(case)
    assert case.status == CaseStatus.resolved
    assert session.exec(select(VolunteerClaim).where(VolunteerClaim.case_id == case.id)).one().active is False


def test_pool_offers_go_to_volunteers_of_the_case_grid_or_the_whole_community(session: Session) -> None:
    seeded(session)
    first = _pool_case(session)  # XFL-B1, in the community's first grid
    local, elsewhere = _sanitation_volunteers(session, first.community_id)[:1] + [
        Volunteer(community_id=first.community_id, name="周志愿", skills="sanitation")]
    other_grid = session.exec(select(Grid).where(Grid.community_id == first.community_id,
                                                 Grid.id != first.grid_id)).first()
    assert first.grid_id is not None and other_grid is not None
    local.grid_id, elsewhere.grid_id = first.grid_id, other_grid.id
    session.add_all([local, elsewhere])
    session.commit()
    case = _pool_case(session)
    offered = set(session.exec(select(Notification.target).where(Notification.case_id == case.id,
                                                                  Notification.kind == "offer")).all())
    assert f"volunteer:{local.id}" in offered
    assert f"volunteer:{elsewhere.id}" not in offered  # serves another grid
    with pytest.raises(ValidationError, match="not offered to volunteer"):
        claim(session, case.number, volunteer_id=elsewhere.id, config=CONFIG)


def test_a_claim_on_a_taken_case_a_closed_window_or_without_the_skill_is_refused(session: Session) -> None:
    seeded(session)
    case = _pool_case(session)
    first, = _sanitation_volunteers(session, case.community_id)[:1]
    unskilled = session.exec(select(Volunteer).where(Volunteer.community_id == case.community_id,
                                                     Volunteer.skills == "legal_advice")).one()
    with pytest.raises(ValidationError, match="not offered to volunteer"):
        claim(session, case.number, volunteer_id=unskilled.id, config=CONFIG)
    claim(session, case.number, volunteer_id=first.id, config=CONFIG)
    session.commit()
    with pytest.raises(Conflict, match="already been taken"):
        claim(session, case.number, volunteer_id=first.id, config=CONFIG)
    session.rollback()
    late = _pool_case(session)
    routing = session.exec(select(CaseRouting).where(CaseRouting.case_id == late.id)).one()
    routing.pool_until = utcnow() - timedelta(seconds=1)
    session.add(routing)
    session.commit()
    with pytest.raises(Conflict, match="claim window"):
        claim(session, late.number, volunteer_id=first.id, config=CONFIG)


def test_a_volunteer_cannot_hold_more_open_claims_than_the_cap(session: Session) -> None:
    seeded(session)
    config = CONFIG.with_policy(_policy(claim={"window_minutes": 30, "max_open_claims": 1, "max_difficulty": 2}))
    one, two = _pool_case(session, config), _pool_case(session, config)
    volunteer = _sanitation_volunteers(session, one.community_id)[0]
    claim(session, one.number, volunteer_id=volunteer.id, config=config)
    session.commit()
    with pytest.raises(ValidationError, match="already holds 1 open claim"):
        claim(session, two.number, volunteer_id=volunteer.id, config=config)
    session.rollback()
    assert session.exec(select(CaseRouting).where(CaseRouting.case_id == two.id)).one().volunteer_id is None


def test_two_volunteers_claiming_at_once_exactly_one_wins(session: Session, engine: Engine) -> None:
    seeded(session)
    case = _pool_case(session)
    # A second volunteer with the skill, so two different people race for the case.
    rival = Volunteer(community_id=case.community_id, name="赵志愿", skills="sanitation")
    session.add(rival)
    session.commit()
    contenders = [_sanitation_volunteers(session, case.community_id)[0].id, rival.id]
    start = threading.Barrier(2)
    outcomes: dict[int, str] = {}

    def attempt(volunteer_id: int) -> None:
        with Session(engine, expire_on_commit=False) as own:
            start.wait()
            try:
                claim(own, case.number, volunteer_id=volunteer_id, config=CONFIG)
                own.commit()
                outcomes[volunteer_id] = "won"
            except Conflict:
                own.rollback()
                outcomes[volunteer_id] = "lost"

    threads = [threading.Thread(target=attempt, args=(v,)) for v in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes.values()) == ["lost", "won"]
    winner = next(v for v, outcome in outcomes.items() if outcome == "won")
    session.expire_all()
    assert session.exec(select(CaseRouting).where(CaseRouting.case_id == case.id)).one().volunteer_id == winner
    claims = session.exec(select(VolunteerClaim).where(VolunteerClaim.case_id == case.id)).all()
    assert [c.volunteer_id for c in claims] == [winner]


def test_an_unclaimed_case_falls_back_to_on_duty_staff_when_the_window_passes(session: Session) -> None:
    seeded(session)
    case = _pool_case(session)
    routing = session.exec(select(CaseRouting).where(CaseRouting.case_id == case.id)).one()
    assert sweep(session, now=utcnow(), config=CONFIG).fallback == []  # window still open
    session.commit()
    team = session.exec(select(Staff).where(Staff.team == "property", Staff.community_id == case.community_id,
                                            Staff.role != StaffRole.team_lead).order_by(Staff.id)).all()
    team[0].on_duty = False  # skipped
    session.add(team[0])
    session.commit()
    out = sweep(session, now=routing.pool_until + timedelta(seconds=1), config=CONFIG)  # type: ignore[operator]
    session.commit()
    assert out.fallback == [case.number]
    session.refresh(case)
    assert case.status == CaseStatus.dispatched and case.assignee_id == team[1].id
    assert _kinds(session, case.id)[-1] == "assignment"
    # The pool is closed for the case: nobody can claim it any more.
    with pytest.raises(Conflict):
        claim(session, case.number, volunteer_id=_sanitation_volunteers(session, case.community_id)[0].id,
              config=CONFIG)


def test_hard_cases_go_to_the_team_lead_first(session: Session) -> None:
    seeded(session)
    config = CONFIG.with_policy(_policy(difficulty_rules=[{"difficulty": 3, "keywords": ["整栋"]}]))
    case = _assessed(session, a_case(session, text="整栋楼的水管都漏水", category="facility_repair"), config)
    lead = session.get(Staff, case.assignee_id)
    assert lead is not None and lead.role == StaffRole.team_lead


def test_a_legal_question_is_referred_to_the_agency_through_its_channel(session: Session) -> None:
    seeded(session)
    policy = _policy(agencies=[{"code": "legal_aid", "name": "区法律援助中心", "contact_url": "json://127.0.0.1:9/x"}])
    case = _assessed(session, a_case(session, text="被拖欠工资想咨询律师", category="legal_advice"),
                     CONFIG.with_policy(policy))
    route = session.exec(select(NotifyRoute).where(NotifyRoute.code == "agency-legal_aid")).one()
    assert route.contact_url == "json://127.0.0.1:9/x"
    referral = session.exec(select(Notification).where(Notification.case_id == case.id,
                                                       Notification.kind == "referral")).one()
    assert referral.target == f"route:{route.id}" and "区法律援助中心" in referral.body
    assert case.assignee_id is not None and "referred" in _actions(session, case.id)


def test_reassign_and_transfer_need_a_reason_and_move_the_case(session: Session) -> None:
    seeded(session)
    case = _assessed(session, a_case(session))
    first = case.assignee_id
    with pytest.raises(ValidationError, match="needs a reason"):
        reassign(session, case.number, by="staff:1", reason="", config=CONFIG, to_team="community")
    other = session.exec(select(Staff).where(Staff.team == "property", Staff.community_id == case.community_id,
                                             Staff.id != first, Staff.role != StaffRole.team_lead)).first()
    assert other is not None
    reassign(session, case.number, by="staff:1", reason="原处理人休假", config=CONFIG, to_staff=other.id)
    session.commit()
    session.refresh(case)
    assert case.assignee_id == other.id
    accept(session, case.number, actor=f"staff:{other.id}")
    reassign(session, case.number, by="staff:1", reason="属于邻里纠纷", config=CONFIG, to_team="community")
    session.commit()
    session.refresh(case)
    new = session.get(Staff, case.assignee_id)
    assert case.status == CaseStatus.dispatched and new is not None and new.team == "community"
    active = session.exec(select(Assignment).where(Assignment.case_id == case.id, Assignment.active == True)  # noqa: E712
                          ).all()
    assert [a.staff_id for a in active] == [new.id]
    assert session.exec(select(CaseRouting).where(CaseRouting.case_id == case.id)).one().team == "community"


# --- handle, evaluate, SLA ------------------------------------------------------------------------


def test_a_bad_rating_sends_a_volunteer_case_back_to_the_same_volunteer(session: Session) -> None:
    seeded(session)
    case = _pool_case(session)
    volunteer = _sanitation_volunteers(session, case.community_id)[0]
    actor = f"volunteer:{volunteer.id}"
    claim(session, case.number, volunteer_id=volunteer.id, config=CONFIG)
    accept(session, case.number, actor=actor)
    resolve(session, case.number, actor=actor)
    session.commit()
    evaluate(session, case.id, config=CONFIG)
    stranger = a_resident(session, "XFL-B2")
    with pytest.raises(ValidationError, match="only the reporter"):
        rate(session, case.number, resident_id=stranger.id, rating=1, comment="不满意")
    rate(session, case.number, resident_id=case.reporter_id, rating=2, comment="还有垃圾")
    session.commit()
    evaluate(session, case.id, config=CONFIG)
    session.commit()
    result = dispatch(session, case.id, config=CONFIG)
    session.commit()
    assert result.detail == f"back to volunteer:{volunteer.id}"
    notice = session.exec(select(Notification).where(Notification.case_id == case.id,
                                                     Notification.kind == "reopened")).one()
    assert notice.target == actor and "还有垃圾" in notice.body
    accept(session, case.number, actor=actor)  # the same volunteer handles it again
    session.commit()


def test_warning_then_escalation_per_level_with_each_level_route(session: Session) -> None:
    seeded(session)
    levels = [EscalationLevel(level=0, name_zh="社区", name_en="community").model_dump(),
              EscalationLevel(level=1, name_zh="街道", name_en="street office",
                              notify_urls=["json://127.0.0.1:9/street"]).model_dump(),
              EscalationLevel(level=2, name_zh="区级部门", name_en="district", notify_staff=False,
                              notify_urls=["json://127.0.0.1:9/district"]).model_dump()]
    config = CONFIG.with_policy(_policy(escalation=levels))
    case = _assessed(session, a_case(session), config)
    assert case.due_at is not None and case.warn_at is not None
    warned = sweep(session, now=case.warn_at + timedelta(seconds=1), config=config)
    session.commit()
    assert warned.warned == [case.number] and warned.escalated == []
    assert _kinds(session, case.id)[-1] == "sla_warning"
    first = sweep(session, now=case.due_at + timedelta(seconds=1), config=config)
    session.commit()
    session.refresh(case)
    assert first.escalated == [case.number] and case.escalation_level == 1
    street = session.exec(select(NotifyRoute).where(NotifyRoute.code == "escalation-1")).one()
    targets = session.exec(select(Notification.target).where(Notification.case_id == case.id,
                                                             Notification.kind == "escalation")).all()
    assert f"route:{street.id}" in targets and any(t.startswith("staff:") for t in targets)
    second = sweep(session, now=case.due_at + timedelta(seconds=1), config=config)
    session.commit()
    session.refresh(case)
    assert second.escalated == [case.number] and case.escalation_level == 2
    district = session.exec(select(NotifyRoute).where(NotifyRoute.code == "escalation-2")).one()
    newest = session.exec(select(Notification.target).where(Notification.case_id == case.id,
                                                            Notification.kind == "escalation")
                          .order_by(col(Notification.id).desc())).first()
    assert newest == f"route:{district.id}"  # level 2 tells only its route (notify_staff off)
    third = sweep(session, now=case.due_at + timedelta(days=30), config=config)
    assert third.escalated == []  # the top of the chain


def test_a_shorter_chain_stops_escalating_at_its_top(session: Session) -> None:
    seeded(session)
    config = CONFIG.with_policy(_policy(escalation=[{"level": 0, "name_zh": "社区", "name_en": "community"},
                                                    {"level": 1, "name_zh": "街道", "name_en": "street"}]))
    case = _assessed(session, a_case(session), config)
    for _ in range(3):
        sweep(session, now=utcnow() + timedelta(days=60), config=config)
        session.commit()
    session.refresh(case)
    assert case.escalation_level == 1


def test_auto_close_days_come_from_the_policy(session: Session) -> None:
    seeded(session)
    config = CONFIG.with_policy(_policy(auto_close_days=1))
    case = _assessed(session, a_case(session), config)
    accept(session, case.number, actor=f"staff:{case.assignee_id}")
    resolve(session, case.number, actor=f"staff:{case.assignee_id}")
    session.commit()
    assert sweep(session, now=utcnow() + timedelta(hours=23), config=config).auto_closed == []
    assert sweep(session, now=utcnow() + timedelta(hours=25), config=config).auto_closed == [case.number]
    session.commit()
    closed = session.exec(select(Notification).where(Notification.case_id == case.id,
                                                     Notification.kind == "closed")).one()
    assert closed.target == f"resident:{case.reporter_id}" and "满意" in closed.body


def test_the_simulated_volunteers_claim_accept_and_resolve_pooled_cases(session: Session, engine: Engine) -> None:
    from linli.events import RecordingBus
    from linli.simulator import Simulator, SimulatorPlan

    seeded(session)
    case = _pool_case(session)
    sim = Simulator(engine=engine, bus=RecordingBus(), config=CONFIG,
                    plan=SimulatorPlan(accept_after=0, resolve_after=0, seed=1))
    sim._act(sim._volunteer_work)
    sim._act(sim._volunteer_work)
    assert sim.stats.errors == []
    session.expire_all()
    assert session.get(Case, case.id).status == CaseStatus.resolved  # type: ignore[union-attr]
    assert "claimed" in _actions(session, case.id)
    assert "linli.case.claimed" in sim.bus.names()  # type: ignore[attr-defined]


def test_policy_check_names_what_is_wrong_in_a_file(tmp_path, settings) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from linli.cli import app as cli

    data = default_policy().model_dump()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert CliRunner().invoke(cli, ["policy", "check", str(good)]).exit_code == 0
    data["categories"][2]["sla_hours"] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(cli, ["policy", "check", str(bad)])
    assert result.exit_code == 2 and "categories.2.sla_hours" in result.output and "greater than 0" in result.output
