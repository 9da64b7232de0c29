"""Patrol routes from CSV (`linli patrol import`, `linli patrol routes`): each bad row reported by line and field,
a route all or nothing, a dry run writing nothing; the imported route is walked and checked like the demo's."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from linli.errors import ValidationError
from linli.models import Staff
from linli.models.registry import AuditEntry, PatrolCheckpoint, PatrolRoute
from linli.patrol import import_routes_csv, list_routes, rounds_on, scan
from linli.settings import REPO_ROOT, Settings
from tests.factories import seeded

EXAMPLE = REPO_ROOT / "examples" / "community" / "patrol_routes.csv"
HEADER = "route_code,route_name,community,lead,checkpoint_code,checkpoint_name,location,window_start,window_end," \
         "grace_minutes\n"


def test_the_example_imports_its_good_routes_and_names_its_bad_row(session: Session) -> None:
    seeded(session)
    result = import_routes_csv(session, EXAMPLE.read_text(encoding="utf-8"))
    session.commit()
    assert (result.rows, result.imported) == (6, 5)
    assert [(e.line, e.field) for e in result.errors] == [(7, "window_end")]  # 14:00–13:00
    routes = {r.code: r for r in list_routes(session)}
    assert set(routes) == {"XFL-NIGHT", "HPY-FIRE"}
    night = routes["XFL-NIGHT"]
    lead = session.exec(select(Staff).where(Staff.name == "赵军")).one()  # named by name in the file
    assert night.community == "XFL" and night.lead == f"赵军 (staff:{lead.id})"
    assert [(cp.seq, cp.code, cp.name, cp.window_start, cp.grace_minutes) for cp in night.checkpoints] == [
        (1, "XFL-CP-N-GATE", "东门岗亭（东门）", "20:00", 15),
        (2, "XFL-CP-N-GARAGE", "地下车库（2栋地下一层）", "21:00", 15),
        (3, "XFL-CP-N-PUMP", "水泵房（5栋北侧）", "22:00", 15)]
    assert routes["HPY-FIRE"].lead.endswith("(staff:20)")  # named by staff id
    audit = session.exec(select(AuditEntry).where(AuditEntry.entity == "patrol")).one()
    assert audit.detail == "5 of 6 checkpoint rows, 1 refused"
    # walked like any route: a scan shows on today's rounds
    scan(session, "XFL-CP-N-GATE", by="guard:老周", at=datetime(2026, 11, 25, 12, 5, tzinfo=UTC))  # 20:05 local
    rounds = rounds_on(session, now=datetime(2026, 11, 25, 12, 10, tzinfo=UTC), tz="Asia/Shanghai")
    assert {(r.code, r.status) for r in rounds if r.route == "幸福里夜间巡更"} == {
        ("XFL-CP-N-GATE", "ok"), ("XFL-CP-N-GARAGE", "upcoming"), ("XFL-CP-N-PUMP", "upcoming")}


def test_a_route_with_one_bad_row_is_not_written_and_its_other_rows_say_why(session: Session) -> None:
    seeded(session)
    text = HEADER + "\n".join([
        "R-1,一号线,XFL,9,R1-A,甲,,08:00,09:00,10",
        "R-1,一号线,XFL,9,R1-B,乙,,07:00,07:30,10",       # before the previous stop
        "R-1,一号线,XFL,9,R1-A,丙,,10:00,11:00,x",       # the same code again, and a bad grace
        "R-2,二号线,NOPE,,R2-A,丁,,08:00,09:00,",        # unknown community
        "R-3,三号线,XFL,nobody,R3-A,戊,,8:00,09:00,",    # unknown lead
        "R-4,四号线,XFL,,XFL-CP-GATE,己,,08:00,09:00,",  # fine on its own …
    ]) + "\n"
    session.add(PatrolRoute(code="OLD", name="旧线", community_id=1))
    session.flush()
    old = session.exec(select(PatrolRoute).where(PatrolRoute.code == "OLD")).one()
    session.add(PatrolCheckpoint(route_id=old.id, seq=1, code="XFL-CP-GATE", name="东门", window_start="00:00",
                                 window_end="01:00"))  # … but its checkpoint code is taken
    session.flush()
    result = import_routes_csv(session, text)
    found = {(e.line, e.field) for e in result.errors}
    assert {(3, "window_start"), (4, "grace_minutes"), (5, "community"), (6, "lead"),
            (7, "checkpoint_code")} <= found
    assert (2, "route_code") in found  # R-1's good first row: "route R-1 not imported: see line 3"
    assert result.imported == 0
    assert session.exec(select(PatrolRoute).where(PatrolRoute.code != "OLD")).all() == []


def test_an_existing_route_code_is_refused_and_a_file_without_columns_refused_whole(session: Session) -> None:
    seeded(session)
    import_routes_csv(session, EXAMPLE.read_text(encoding="utf-8"))
    again = import_routes_csv(session, EXAMPLE.read_text(encoding="utf-8"))
    assert again.imported == 0 and any("already exists" in e.message for e in again.errors)
    with pytest.raises(ValidationError, match="lacks the column"):
        import_routes_csv(session, "route_code,checkpoint_code\nR,C\n")


def test_the_commands_dry_run_writes_nothing_and_routes_lists_what_was_imported(settings: Settings) -> None:
    from linli import db

    with db.session_scope() as session:
        seeded(session)
    command = [sys.executable, "-m", "linli.cli", "patrol", "import", str(EXAMPLE)]
    env_run = {"capture_output": True, "text": True, "timeout": 120, "env": {**os.environ, "COLUMNS": "160"}}
    dry = subprocess.run([*command, "--dry-run"], **env_run)  # type: ignore[call-overload]
    assert dry.returncode == 1, dry.stderr
    assert "未写入任何数据" in dry.stdout and "window_end" in dry.stdout and "5 行可导入" in dry.stdout
    with db.session_scope() as session:
        assert session.exec(select(PatrolRoute)).all() == []
    real = subprocess.run(command, **env_run)  # type: ignore[call-overload]
    assert real.returncode == 1 and "导入 5 行" in real.stdout and "1 行有误" in real.stdout
    listed = subprocess.run([sys.executable, "-m", "linli.cli", "patrol", "routes"], **env_run)  # type: ignore[call-overload]
    assert listed.returncode == 0, listed.stderr
    assert "XFL-NIGHT" in listed.stdout and "HPY-CP-EXIT" in listed.stdout and "20:00–20:30" in listed.stdout
