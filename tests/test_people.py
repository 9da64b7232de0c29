"""The registry and its safeguards on real PostgreSQL and SQLite: imports, logins and roles, masking and
audited reveals, exports, collection with review, announcements, patrol rounds, retention, rosters."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from linli import auth, people
from linli.announce import deliveries, publish
from linli.errors import AccessDenied, NotFound, ValidationError
from linli.models import Case, CaseStatus, Grid, Notification, Resident, Staff, StaffRole, utcnow
from linli.models.registry import (
    AuditEntry,
    ChangeStatus,
    LoginSession,
    PatrolIssue,
    PatrolScan,
    ResidentDetail,
    Role,
    Vehicle,
)
from linli.notify import AppriseNotifier, deliver
from linli.patrol import CheckpointIn, check_rounds, create_route, file_finding, rounds_on, scan
from linli.registry import ID_CHECK, ID_WEIGHTS, add_shifts, id_number_valid, import_csv, on_duty
from linli.retention import RetentionPolicy, purge
from linli.settings import REPO_ROOT, Settings
from tests.factories import CONFIG, a_case, seeded
from tests.receivers import NotificationReceiver

EXAMPLES = REPO_ROOT / "examples" / "community"
TZ = "Asia/Shanghai"


def valid_id(prefix17: str) -> str:
    """An ID number with the right check character."""
    total = sum(int(d) * w for d, w in zip(prefix17, ID_WEIGHTS, strict=True))
    return prefix17 + ID_CHECK[total % 11]


def imported(session: Session) -> None:
    """The sample street office plus the example CSVs (good rows only), committed."""
    seeded(session)
    for kind in ("households", "residents", "vehicles"):
        import_csv(session, kind, (EXAMPLES / f"{kind}.csv").read_text(encoding="utf-8"))
    session.commit()


def user(session: Session, role: Role, *, staff_id: int | None = None, name: str = "") -> auth.CurrentUser:
    """A committed account of `role`, as the signed-in user."""
    account = auth.create_user(session, name or f"{role}-user", "correct horse", role, staff_id=staff_id)
    session.commit()
    return auth.CurrentUser(id=account.id, username=account.username, role=account.role,  # type: ignore[arg-type]
                            staff_id=staff_id)


def grid_worker_of(session: Session, grid_code: str) -> int:
    grid = session.exec(select(Grid).where(Grid.code == grid_code)).one()
    assert grid.grid_worker_id is not None
    return grid.grid_worker_id


# --- imports ---------------------------------------------------------------------------------


def test_id_number_checksum() -> None:
    good = valid_id("34010419410101012")
    assert id_number_valid(good) and id_number_valid(good.lower())
    assert not id_number_valid(good[:-1] + ("0" if good[-1] != "0" else "1"))  # wrong check character
    assert not id_number_valid(valid_id("34010419411301012"))  # month 13: right checksum, impossible date
    assert not id_number_valid("3401041941010101")  # too short


def test_import_reports_each_bad_row_and_keeps_only_the_good(session: Session) -> None:
    seeded(session)
    households = import_csv(session, "households", (EXAMPLES / "households.csv").read_text(encoding="utf-8"))
    assert (households.rows, households.imported) == (5, 4)
    assert [(e.line, e.field) for e in households.errors] == [(6, "building")]
    result = import_csv(session, "residents", (EXAMPLES / "residents.csv").read_text(encoding="utf-8"))
    session.commit()
    assert (result.rows, result.imported) == (7, 5)
    assert [(e.line, e.field) for e in result.errors] == [(7, "id_number"), (8, "building")]
    assert "checksum" in result.errors[0].message and "XFL-B99" in result.errors[1].message
    names = set(session.exec(select(Resident.name)).all())
    assert {"张桂兰", "赵德顺"} <= names and not {"钱坏号", "周未知"} & names
    alone = session.exec(select(ResidentDetail).where(ResidentDetail.living_alone == True)).all()  # noqa: E712
    assert len(alone) == 2
    vehicles = import_csv(session, "vehicles", (EXAMPLES / "vehicles.csv").read_text(encoding="utf-8"))
    session.commit()
    assert vehicles.imported == 2
    assert [(e.line, e.field) for e in vehicles.errors] == [(4, "plate"), (5, "plate")]
    assert "duplicate plate" in vehicles.errors[0].message
    assert sorted(session.exec(select(Vehicle.plate)).all()) == ["皖A12345", "皖AD8888"]
    # Importing the same file again: every plate is a duplicate now, nothing is added.
    again = import_csv(session, "vehicles", (EXAMPLES / "vehicles.csv").read_text(encoding="utf-8"))
    assert again.imported == 0 and len(again.errors) == 4
    audit = session.exec(select(AuditEntry).where(AuditEntry.action == "import")).all()
    assert {a.entity for a in audit} == {"households", "residents", "vehicles"}


def test_a_dry_run_writes_nothing(session: Session) -> None:
    seeded(session)
    before = len(session.exec(select(Resident)).all())
    result = import_csv(session, "residents", (EXAMPLES / "residents.csv").read_text(encoding="utf-8"), dry_run=True)
    assert result.dry_run and result.imported == 5 and len(result.errors) == 2
    session.commit()
    assert len(session.exec(select(Resident)).all()) == before
    assert session.exec(select(ResidentDetail)).all() == []
    assert session.exec(select(AuditEntry)).all() == []


def test_a_file_without_required_columns_is_refused_whole(session: Session) -> None:
    seeded(session)
    with pytest.raises(ValidationError, match="lacks the column"):
        import_csv(session, "residents", "name,phone\n张三,13900000000\n")


def test_the_import_command_prints_the_rows_and_exits_1_on_bad_rows(settings: Settings) -> None:
    from linli import db

    with db.session_scope() as session:
        seeded(session)
    command = [sys.executable, "-m", "linli.cli", "import", "residents", str(EXAMPLES / "residents.csv")]
    dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 1, dry.stderr
    assert "试导入" in dry.stdout and "未写入任何数据" in dry.stdout and "id_number" in dry.stdout
    with db.session_scope() as session:
        assert session.exec(select(ResidentDetail)).all() == []
    real = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert real.returncode == 1 and "导入 5 行" in real.stdout
    with db.session_scope() as session:
        assert len(session.exec(select(ResidentDetail)).all()) == 5


# --- logins and roles --------------------------------------------------------------------------


def test_passwords_are_stored_as_scrypt_hashes(session: Session) -> None:
    seeded(session)
    user(session, Role.manager, name="mgr")
    from linli.models.registry import UserAccount

    stored = session.exec(select(UserAccount)).one().password_hash
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert auth.verify_password("correct horse", stored) and not auth.verify_password("wrong", stored)


def test_login_refuses_without_saying_which_part_and_slows_repeated_failures(session: Session) -> None:
    seeded(session)
    user(session, Role.manager, name="mgr")
    now = utcnow()
    with pytest.raises(AccessDenied) as unknown_user:
        auth.login(session, "nobody", "correct horse", now=now)
    with pytest.raises(AccessDenied) as wrong_password:
        auth.login(session, "mgr", "wrong password", now=now)
    assert unknown_user.value.message == wrong_password.value.message  # same words either way
    for _ in range(2):
        with pytest.raises(AccessDenied):
            auth.login(session, "mgr", "wrong password", now=now)
    session.commit()
    # Three failures in a row: even the right password must wait now.
    with pytest.raises(AccessDenied, match="too many failed logins"):
        auth.login(session, "mgr", "correct horse", now=now + timedelta(seconds=1))
    token = auth.login(session, "mgr", "correct horse", now=now + timedelta(seconds=auth.wait_seconds(3) + 1))
    session.commit()
    me = auth.session_user(session, token)
    assert me.username == "mgr" and me.role == Role.manager
    assert session.exec(select(LoginSession)).one().token_hash != token  # only a hash of the token is kept
    with pytest.raises(AccessDenied, match="expired"):
        auth.session_user(session, token, now=utcnow() + timedelta(hours=auth.SESSION_HOURS + 1))
    auth.logout(session, token)
    with pytest.raises(AccessDenied):
        auth.session_user(session, token)
    assert [auth.wait_seconds(n) for n in (0, 2, 3, 4, 5, 20)] == [0, 0, 2, 4, 8, auth.MAX_WAIT_SECONDS]


def test_each_role_may_do_only_its_actions(session: Session) -> None:
    seeded(session)
    viewer = user(session, Role.viewer)
    with pytest.raises(AccessDenied):
        people.residents(session, viewer)
    staff = user(session, Role.staff)
    assert people.residents(session, staff)
    with pytest.raises(AccessDenied):
        people.reveal(session, staff, 1, "phone", "电话回访核实")
    with pytest.raises(AccessDenied):
        people.export_csv(session, staff, unmasked=True, reason="上级检查")
    with pytest.raises(AccessDenied):
        publish(session, staff, title="停水通知", body="明天停水", community="XFL", language="zh",
                templates_dir=REPO_ROOT / "templates")
    assert session.exec(select(AuditEntry).where(AuditEntry.action.in_(["reveal", "export"]))).all() == []  # type: ignore[attr-defined]


def test_a_grid_worker_sees_only_their_grid_masked(session: Session) -> None:
    imported(session)
    worker = user(session, Role.grid_worker, staff_id=grid_worker_of(session, "XFL-G1"), name="gw1")
    rows = people.residents(session, worker)
    assert rows and {r.grid for r in rows} == {"XFL-G1"}
    everyone = session.exec(select(Resident)).all()
    assert len(rows) < len(everyone)
    shown = " ".join(r.model_dump_json() for r in rows)
    for resident in everyone:
        assert resident.name not in shown and (not resident.phone or resident.phone not in shown)
    zhang = next(r for r in rows if r.name == "张**")
    assert zhang.id_number == "340*************26" and zhang.phone == "139****0001"
    assert zhang.tags == ["elderly_alone"] and zhang.living_alone
    # A resident of another grid: not found, exactly like one that does not exist.
    other = session.exec(select(Resident).where(Resident.name == "赵德顺")).one()
    with pytest.raises(NotFound):
        people.propose_change(session, worker, other.id, {"phone": "13900000000"}, review=False)  # type: ignore[arg-type]
    # Tags are shown only to the roles they name.
    assert all(r.tags == [] for r in people.residents(session, user(session, Role.staff)))


def test_reveal_needs_a_role_and_a_reason_and_is_audited(session: Session) -> None:
    imported(session)
    manager = user(session, Role.manager)
    zhang = session.exec(select(Resident).where(Resident.name == "张桂兰")).one()
    with pytest.raises(ValidationError, match="reason"):
        people.reveal(session, manager, zhang.id, "id_number", "  ")  # type: ignore[arg-type]
    assert people.reveal(session, manager, zhang.id, "id_number", "民政补贴核实") == valid_id("34010419410101012")  # type: ignore[arg-type]
    assert people.reveal(session, manager, zhang.id, "phone", "电话回访核实") == "13905510001"  # type: ignore[arg-type]
    session.commit()
    log = session.exec(select(AuditEntry).where(AuditEntry.action == "reveal")).all()
    assert [(a.actor, a.entity_id, a.detail, a.reason) for a in log] == [
        ("user:manager-user", str(zhang.id), "id_number", "民政补贴核实"),
        ("user:manager-user", str(zhang.id), "phone", "电话回访核实")]
    assert all("13905510001" not in a.detail + a.reason for a in log)  # the audit never holds the value


def test_exports_are_masked_unless_role_and_reason_allow(session: Session) -> None:
    imported(session)
    manager = user(session, Role.manager)
    masked = people.export_csv(session, manager)
    assert "张**" in masked and "张桂兰" not in masked and "13905510001" not in masked
    assert valid_id("34010419410101012") not in masked
    with pytest.raises(AccessDenied):
        people.export_csv(session, manager, unmasked=True, reason="公安协查")
    admin = user(session, Role.admin)
    with pytest.raises(ValidationError):
        people.export_csv(session, admin, unmasked=True, reason="")
    full = people.export_csv(session, admin, unmasked=True, reason="公安协查函 2026-118")
    rows = list(csv.DictReader(io.StringIO(full)))
    assert any(r["name"] == "张桂兰" and r["phone"] == "13905510001" for r in rows)
    session.commit()
    exports = session.exec(select(AuditEntry).where(AuditEntry.action == "export").order_by(AuditEntry.id)).all()
    assert [e.detail.split(", ")[1] for e in exports] == ["masked", "unmasked"]
    assert exports[1].reason == "公安协查函 2026-118"
    plates = people.export_vehicles_csv(session, manager)
    assert "皖A***45" in plates and "皖A12345" not in plates
    assert "皖A12345" in people.export_vehicles_csv(session, admin, unmasked=True, reason="停车场核查")
    worker = user(session, Role.grid_worker, staff_id=grid_worker_of(session, "HPY-G1"), name="gw-hpy")
    with pytest.raises(AccessDenied):
        people.export_vehicles_csv(session, worker)  # grid workers do not export


def test_collection_changes_apply_or_wait_for_review_and_are_audited(session: Session) -> None:
    imported(session)
    worker = user(session, Role.grid_worker, staff_id=grid_worker_of(session, "XFL-G1"), name="gw1")
    reviewer = user(session, Role.staff, name="cw1")
    li = session.exec(select(Resident).where(Resident.name == "李明")).one()
    direct = people.propose_change(session, worker, li.id, {"living_alone": True}, review=False)  # type: ignore[arg-type]
    assert direct.status == ChangeStatus.applied
    assert session.get(ResidentDetail, li.id).living_alone  # type: ignore[union-attr]
    pending = people.propose_change(session, worker, li.id, {"phone": "13800001111"}, review=True)  # type: ignore[arg-type]
    session.commit()
    assert session.get(Resident, li.id).phone == "13905510002"  # type: ignore[union-attr]  # not yet
    with pytest.raises(ValidationError, match="phone"):
        people.propose_change(session, worker, li.id, {"phone": "12345"}, review=False)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="cannot change"):
        people.propose_change(session, worker, li.id, {"name": "李四"}, review=False)  # type: ignore[arg-type]
    assert [c.id for c in people.pending_changes(session, reviewer)] == [pending.id]
    people.review_change(session, reviewer, pending.id, approve=True)  # type: ignore[arg-type]
    session.commit()
    assert session.get(Resident, li.id).phone == "13800001111"  # type: ignore[union-attr]
    actions = [(a.actor, a.action) for a in session.exec(select(AuditEntry).where(
        AuditEntry.action.in_(["change", "review"])).order_by(AuditEntry.id)).all()]  # type: ignore[attr-defined]
    assert actions == [("user:gw1", "change"), ("user:gw1", "change"), ("user:cw1", "review")]


# --- announcements -----------------------------------------------------------------------------


def test_an_announcement_reaches_each_recipient_and_delivery_is_tracked(session: Session, settings: Settings) -> None:
    imported(session)
    manager = user(session, Role.manager)
    zhang = session.exec(select(Resident).where(Resident.name == "张桂兰")).one()
    zhang.contact_url = "json://127.0.0.1:1/unreachable"  # one channel that fails
    session.add(zhang)
    session.commit()
    published = publish(session, manager, title="冬季用电安全", body="请勿私拉电线给电动车充电。", community="XFL",
                        audience="living_alone", language="zh", templates_dir=settings.templates_dir)
    session.commit()
    assert published.recipients == 1  # only 张桂兰 lives alone in XFL (赵德顺 is in HPY)
    everyone = publish(session, manager, title="停水通知", body="周三 9:00–12:00 停水。", community="XFL",
                       building="XFL-B1", language="zh", templates_dir=settings.templates_dir)
    session.commit()
    in_b1 = session.exec(select(Resident).where(Resident.building_id == zhang.building_id)).all()
    assert everyone.recipients == len(in_b1)
    with NotificationReceiver() as receiver:
        deliver(session, everyone.notifications + published.notifications,
                notifier=AppriseNotifier(timeout_seconds=3), global_urls=[receiver.apprise_url("all")])
        messages = receiver.wait_for(count=len(in_b1) + 1, timeout=20)
    assert all("停水通知" in m["json"]["title"] or "冬季用电安全" in m["json"]["title"] for m in messages)
    assert not any("张桂兰" in m["json"]["message"] for m in messages)  # names masked in notifications
    summary = {d.title: d.by_status for d in deliveries(session)}
    assert summary["冬季用电安全"] == {"failed": 1}  # her own channel failed, tracked per recipient
    assert summary["停水通知"] == {"failed": 1, "sent": len(in_b1) - 1}


# --- patrol ------------------------------------------------------------------------------------


def _route(session: Session) -> tuple[int, list[str]]:
    lead = session.exec(select(Staff).where(Staff.team == "security", Staff.role == StaffRole.team_lead)).first()
    assert lead is not None
    create_route(session, code="XFL-NIGHT", name="幸福里夜巡", community="XFL", lead_staff_id=lead.id,
                 checkpoints=[CheckpointIn("CP-GATE", "东门", "08:00", "08:30", 15),
                              CheckpointIn("CP-GARAGE", "地下车库", "08:30", "09:00", 15),
                              CheckpointIn("CP-PUMP", "水泵房", "09:00", "09:30", 15)])
    session.commit()
    return lead.id, ["CP-GATE", "CP-GARAGE", "CP-PUMP"]  # type: ignore[return-value]


def _local(day: datetime, hhmm: str) -> datetime:
    from zoneinfo import ZoneInfo

    h, m = map(int, hhmm.split(":"))
    return day.astimezone(ZoneInfo(TZ)).replace(hour=h, minute=m, second=0, microsecond=0).astimezone(UTC)


def test_a_skipped_checkpoint_alerts_the_security_lead_once(session: Session, settings: Settings) -> None:
    seeded(session)
    lead_id, _ = _route(session)
    today = utcnow()
    scan(session, "CP-GATE", by="guard:老周", at=_local(today, "08:10"))
    scan(session, "CP-PUMP", by="guard:老周", at=_local(today, "09:40"))  # 10 minutes late, within grace
    session.commit()
    statuses = {s.code: s.status for s in rounds_on(session, now=_local(today, "09:05"), tz=TZ)}
    assert statuses == {"CP-GATE": "ok", "CP-GARAGE": "pending", "CP-PUMP": "pending"}
    early = check_rounds(session, now=_local(today, "09:10"), tz=TZ, language="zh",
                         templates_dir=settings.templates_dir)
    assert (early.missed, early.late) == ([], [])  # the garage's grace runs to 09:15
    found = check_rounds(session, now=_local(today, "10:00"), tz=TZ, language="zh",
                         templates_dir=settings.templates_dir)
    session.commit()
    assert (found.missed, found.late) == (["CP-GARAGE"], ["CP-PUMP"])
    [note] = [session.get(Notification, i) for i in found.notifications]
    assert note is not None and note.target == f"staff:{lead_id}" and note.kind == "patrol_alert"
    assert "地下车库" in note.body and "漏巡" in note.body and "迟到" in note.body
    again = check_rounds(session, now=_local(today, "10:10"), tz=TZ, language="zh",
                         templates_dir=settings.templates_dir)
    assert again.notifications == [] and len(session.exec(select(PatrolIssue)).all()) == 2
    with pytest.raises(NotFound):
        scan(session, "CP-NOPE", by="guard:老周")


def test_a_route_with_bad_windows_is_refused(session: Session) -> None:
    seeded(session)
    with pytest.raises(ValidationError, match="window"):
        create_route(session, code="R", name="R", community="XFL", lead_staff_id=None,
                     checkpoints=[CheckpointIn("A", "A", "09:00", "08:00")])
    with pytest.raises(ValidationError, match="order"):
        create_route(session, code="R", name="R", community="XFL", lead_staff_id=None,
                     checkpoints=[CheckpointIn("A", "A", "09:00", "09:30"), CheckpointIn("B", "B", "08:00", "08:30")])


def test_an_inspection_finding_becomes_a_patrol_case(session: Session) -> None:
    seeded(session)
    _route(session)
    result = file_finding(session, checkpoint_code="CP-GARAGE", text="消防通道被电动车堵塞", config=CONFIG,
                          category="fire_hazard")
    session.commit()
    case = session.get(Case, result.case_id)
    assert case is not None and case.source == "patrol" and "地下车库" in case.description


# --- retention, rosters, schema ----------------------------------------------------------------


def test_retention_anonymises_old_closed_cases_and_deletes_old_scans(session: Session) -> None:
    seeded(session)
    _route(session)
    old, recent = a_case(session), a_case(session, text="楼道灯不亮")
    long_ago = utcnow() - timedelta(days=400)
    for case, closed_at in ((old, long_ago), (recent, utcnow())):
        case.status, case.closed_at = CaseStatus.closed, closed_at
        session.add(case)
    scan(session, "CP-GATE", by="guard", at=long_ago)
    scan(session, "CP-GATE", by="guard")
    session.commit()
    assert old.reporter_name and old.reporter_id
    counts = purge(session, now=utcnow(), policy=RetentionPolicy(closed_case_days=365, patrol_days=365))
    session.commit()
    assert counts["cases_anonymised"] == 1 and counts["patrol_scans"] == 1
    session.expire_all()
    gone, kept = session.get(Case, old.id), session.get(Case, recent.id)
    assert gone.reporter_id is None and gone.reporter_name == ""  # type: ignore[union-attr]
    assert gone.description and gone.status == CaseStatus.closed  # the facts stay  # type: ignore[union-attr]
    assert kept.reporter_id is not None  # type: ignore[union-attr]
    assert len(session.exec(select(PatrolScan)).all()) == 1
    assert purge(session, now=utcnow(), policy=RetentionPolicy())["cases_anonymised"] == 0  # idempotent


def test_the_duty_roster_says_who_is_on_duty(session: Session) -> None:
    seeded(session)
    security = session.exec(select(Staff).where(Staff.team == "security")).all()
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert {s.id for s in on_duty(session, team="security", at=now)} == {s.id for s in security}  # no roster yet
    add_shifts(session, [(security[0].id, "security", now - timedelta(hours=4), now + timedelta(hours=4)),  # type: ignore[list-item]
                         (security[1].id, "security", now + timedelta(hours=4), now + timedelta(hours=12))])  # type: ignore[list-item]
    assert [s.id for s in on_duty(session, team="security", at=now)] == [security[0].id]
    assert [s.id for s in on_duty(session, team="security", at=now + timedelta(hours=5))] == [security[1].id]
    with pytest.raises(ValidationError):
        add_shifts(session, [(security[0].id, "security", now, now)])  # type: ignore[list-item]


def test_the_migration_builds_the_registry_tables(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert {"household", "unit", "resident_detail", "resident_tag", "vehicle", "duty_shift", "user_account",
            "login_session", "audit_log", "record_change", "announcement", "announcement_delivery",
            "patrol_route", "patrol_checkpoint", "patrol_scan", "patrol_issue"} <= names


def test_the_example_files_are_what_the_readme_promises() -> None:
    assert Path(EXAMPLES / "residents.csv").read_text(encoding="utf-8").startswith("name,phone,id_number")


def test_dispatch_follows_the_duty_roster_when_the_team_keeps_one(session: Session) -> None:
    from linli.loop.assess import assess, receive
    from linli.loop.dispatch import dispatch

    seeded(session)
    case = a_case(session, text="楼上噪音扰民，邻里纠纷", category="neighbour_dispute")
    team = session.exec(select(Staff).where(Staff.team == "community", Staff.community_id == case.community_id,
                                            Staff.role == StaffRole.community_worker).order_by(Staff.id)).all()
    assert len(team) == 2
    now = utcnow()
    add_shifts(session, [(team[1].id, "community", now - timedelta(hours=1), now + timedelta(hours=7)),  # type: ignore[list-item]
                         (team[0].id, "community", now + timedelta(hours=7), now + timedelta(hours=15))])  # type: ignore[list-item]
    session.commit()
    for step in (receive, assess, dispatch):
        step(session, case.id, config=CONFIG)  # type: ignore[arg-type]
    session.commit()
    assert case.assignee_id == team[1].id  # the one on shift now, though the other comes first otherwise


def test_a_grid_worker_files_for_a_resident_in_their_grid_only(session: Session) -> None:
    imported(session)
    worker = user(session, Role.grid_worker, staff_id=grid_worker_of(session, "XFL-G1"), name="gw1")
    zhang = session.exec(select(Resident).where(Resident.name == "张桂兰")).one()
    number = people.file_on_behalf(session, worker, zhang.id, "家里水管漏水，老人不会用手机", category=None,  # type: ignore[arg-type]
                                   config=CONFIG)
    session.commit()
    case = session.exec(select(Case).where(Case.number == number)).one()
    assert case.reporter_id == zhang.id and case.source == "grid_worker"  # she follows and rates it herself
    other = session.exec(select(Resident).where(Resident.name == "赵德顺")).one()
    with pytest.raises(NotFound):
        people.file_on_behalf(session, worker, other.id, "楼道灯坏了", category=None, config=CONFIG)  # type: ignore[arg-type]
    assert session.exec(select(AuditEntry).where(AuditEntry.action == "file_on_behalf")).one().actor == "user:gw1"


def test_the_demo_route_shows_a_missed_stop_to_its_security_lead(session: Session, settings: Settings) -> None:
    from linli.patrol import DEMO_ROUTE, ensure_demo_route

    seeded(session)
    route = ensure_demo_route(session)
    assert ensure_demo_route(session).id == route.id  # a restarted demo keeps one route
    session.commit()
    today = utcnow()
    gate, garage = DEMO_ROUTE[3][0].code, DEMO_ROUTE[3][1].code
    scan(session, gate, by="guard:老周", at=_local(today, "05:00"))
    session.commit()
    found = check_rounds(session, now=_local(today, "12:30"), tz=TZ, language="zh",
                         templates_dir=settings.templates_dir)
    session.commit()
    assert (found.missed, found.late) == ([garage], [])  # the gate was scanned; the pump is still due
    [note] = [session.get(Notification, i) for i in found.notifications]
    assert note is not None and note.target == f"staff:{route.lead_staff_id}" and route.lead_staff_id is not None
    lead = session.get(Staff, route.lead_staff_id)
    assert lead is not None and lead.team == "security" and lead.role == StaffRole.team_lead
