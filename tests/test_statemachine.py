"""The case state machine: legal moves stamp and log; illegal ones raise and write nothing."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from linli.errors import IllegalTransition
from linli.models import Case, CaseEvent, CaseStatus
from linli.statemachine import FINAL_STATUSES, OPEN_STATUSES, TRANSITIONS, can_transition, transition
from tests.factories import a_case, seeded


def test_every_status_has_a_rule_and_final_states_are_final() -> None:
    assert set(TRANSITIONS) == set(CaseStatus)
    assert FINAL_STATUSES == {CaseStatus.closed, CaseStatus.merged, CaseStatus.rejected}
    assert not OPEN_STATUSES & FINAL_STATUSES


@pytest.mark.parametrize(("start", "target", "ok"), [
    (CaseStatus.reported, CaseStatus.assessing, True),
    (CaseStatus.reported, CaseStatus.closed, False),
    (CaseStatus.assessing, CaseStatus.merged, True),
    (CaseStatus.resolved, CaseStatus.reopened, True),
    (CaseStatus.reopened, CaseStatus.dispatched, True),
    (CaseStatus.closed, CaseStatus.reopened, False),
    (CaseStatus.in_progress, CaseStatus.closed, False),
])
def test_can_transition(start: CaseStatus, target: CaseStatus, ok: bool) -> None:
    assert can_transition(start, target) is ok


def test_transition_stamps_the_case_and_writes_the_timeline(session: Session) -> None:
    seeded(session)
    case = a_case(session)
    transition(session, case, CaseStatus.assessing, actor="flow:report", reason="received")
    session.commit()
    fresh = session.get(Case, case.id)
    assert fresh is not None and fresh.status == CaseStatus.assessing and fresh.assessed_at is not None
    last = session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.action == "transition")).one()
    assert (last.from_status, last.to_status, last.actor, last.reason) == (
        CaseStatus.reported, CaseStatus.assessing, "flow:report", "received")


def test_illegal_transition_raises_with_the_way_out_and_writes_nothing(session: Session) -> None:
    seeded(session)
    case = a_case(session)
    before = len(session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)).all())
    with pytest.raises(IllegalTransition) as err:
        transition(session, case, CaseStatus.closed, actor="staff:1")
    assert "cannot go from reported to closed" in str(err.value)
    assert "assessing" in err.value.hint
    session.commit()
    session.expire_all()
    assert session.get(Case, case.id).status == CaseStatus.reported  # type: ignore[union-attr]
    assert len(session.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()) == before
