"""The governance-policy block on a real (test-harness) Prefect server: edits apply to the next run."""

from __future__ import annotations

import asyncio

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate
from sqlmodel import Session, select

from blocks.governance import GovernancePolicyBlock, load_policy, save_policy
from flows.dag_runner import run_dag
from linli.errors import ConfigurationError
from linli.models import CaseRouting, CaseStatus
from linli.policy import GovernancePolicy, Route, default_policy
from linli.settings import Settings
from tasks.policy import current_loop_config
from tests.factories import a_case, seeded


def _with_route(route: Route) -> GovernancePolicy:
    policy = default_policy().model_copy(deep=True)
    row = policy.category("facility_repair")
    assert row is not None
    row.route = route
    return policy


def test_without_a_saved_block_the_defaults_apply(prefect_server: None, settings: Settings) -> None:
    assert load_policy("no-such-policy") is None
    config = current_loop_config()
    assert config.policy == default_policy() and config.auto_close_days == settings.loop.auto_close_days


def test_an_invalid_policy_is_refused_and_nothing_is_saved(prefect_server: None, settings: Settings) -> None:
    data = default_policy().model_dump()
    data["duplicate"]["radius_m"] = -5
    with pytest.raises(ConfigurationError, match=r"duplicate.radius_m: Input should be greater than or equal to 0"):
        save_policy(data, "refused")
    assert load_policy("refused") is None


def test_a_policy_broken_in_the_ui_is_refused_at_run_time_with_the_reason(prefect_server: None,
                                                                         settings: Settings) -> None:
    save_policy(GovernancePolicy(), "edited-in-ui")
    data = GovernancePolicyBlock.load("edited-in-ui").policy.model_dump()
    data["categories"][1]["warning_hours"] = 99  # the UI form checks types, not this cross-field rule

    async def edit() -> None:
        async with get_client() as client:
            document = await client.read_block_document_by_name(
                "edited-in-ui", block_type_slug=GovernancePolicyBlock.get_block_type_slug())
            await client.update_block_document(document.id, BlockDocumentUpdate(data={"policy": data}))

    asyncio.run(edit())
    with pytest.raises(ConfigurationError, match=r"categories.1: .*warning_hours \(99\) must be less than"):
        load_policy("edited-in-ui")


def test_a_policy_edit_changes_the_next_dispatch_without_a_deploy(prefect_server: None, settings: Settings,
                                                                  session: Session) -> None:
    seeded(session)
    save_policy(_with_route(Route.volunteer_pool), settings.governance.policy_block)
    first = a_case(session, text="3栋秋千坏了")
    asyncio.run(run_dag(dag="report", params={"case_id": first.id}))
    save_policy(_with_route(Route.staff_team), settings.governance.policy_block)
    second = a_case(session, text="5栋秋千坏了")
    asyncio.run(run_dag(dag="report", params={"case_id": second.id}))
    session.expire_all()
    routes = {r.case_id: r.route for r in session.exec(select(CaseRouting)).all()}
    assert routes == {first.id: "volunteer_pool", second.id: "staff_team"}
    session.refresh(first)
    session.refresh(second)
    assert first.status == second.status == CaseStatus.dispatched
    assert first.assignee_id is None and second.assignee_id is not None
