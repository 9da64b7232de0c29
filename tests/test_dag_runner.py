"""The generic DAG runner in Prefect's test harness: when:, retries, concurrency, failures, run names,
override blocks (taking effect next run, refused when invalid with the last good kept), deployments."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client

from blocks.dag import DagDefinitionBlock
from flows.dag_runner import DagRunFailed, run_dag
from flows.deployments import dag_deployment
from linli.dag.validate import DagInvalid, load_text
from linli.settings import get_settings
from tests import dag_tasks


def _write(folder: Path, text: str) -> str:
    text = textwrap.dedent(text)
    name = text.split("name:", 1)[1].split()[0]
    (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return name


def _run(name: str, **kwargs: Any) -> dict[str, str]:
    return asyncio.run(run_dag(dag=name, **kwargs))


def test_a_branch_skipped_by_when_skips_what_depends_on_it_and_runs_the_rest(prefect_server: None,
                                                                              dags: Path) -> None:
    name = _write(dags, """
        name: branching
        params: {urgent: false}
        steps:
          start: {task: testing.record, with: {label: start}}
          alarm: {task: testing.record, after: [start], when: "{{ params.urgent }}", with: {label: alarm}}
          after_alarm: {task: testing.record, after: [alarm], with: {label: after_alarm}}
          routine: {task: testing.record, after: [start], when: "not params.urgent", with: {label: routine}}
        """)
    assert _run(name) == {"start": "completed", "alarm": "skipped", "after_alarm": "skipped",
                          "routine": "completed"}
    assert sorted(dag_tasks.RECORDED) == ["routine", "start"]
    dag_tasks.RECORDED.clear()
    assert _run(name, params={"urgent": True})["after_alarm"] == "completed"
    assert sorted(dag_tasks.RECORDED) == ["after_alarm", "alarm", "start"]


def test_a_step_that_fails_then_succeeds_is_retried(prefect_server: None, dags: Path) -> None:
    name = _write(dags, """
        name: retrying
        steps:
          shaky: {task: testing.flaky, retries: 2, retry_delay_seconds: 0, with: {key: shaky, failures: 2}}
          next: {task: testing.record, after: [shaky], with: {label: "attempt {{ steps.shaky.result }}"}}
        """)
    assert _run(name) == {"shaky": "completed", "next": "completed"}
    assert dag_tasks.ATTEMPTS["shaky"] == 3
    assert dag_tasks.RECORDED == ["attempt 3"]


def test_a_failed_step_fails_the_run_naming_it_while_independent_steps_complete(prefect_server: None,
                                                                                dags: Path) -> None:
    name = _write(dags, """
        name: failing
        steps:
          broken: {task: testing.flaky, retries: 0, with: {key: broken, failures: 5}}
          downstream: {task: testing.record, after: [broken], with: {label: downstream}}
          independent: {task: testing.record, with: {label: independent}}
        """)
    with pytest.raises(DagRunFailed, match="broken: RuntimeError: attempt 1 fails on purpose"):
        _run(name)
    assert dag_tasks.RECORDED == ["independent"]


def test_independent_steps_overlap_in_time(prefect_server: None, dags: Path) -> None:
    name = _write(dags, """
        name: parallel
        steps:
          left: {task: testing.sleep, with: {key: left, seconds: 1.0}}
          right: {task: testing.sleep, with: {key: right, seconds: 1.0}}
          join: {task: testing.record, after: [left, right], with: {label: joined}}
        """)
    assert _run(name)["join"] == "completed"
    (left_start, left_end), (right_start, right_end) = dag_tasks.SPANS["left"], dag_tasks.SPANS["right"]
    assert left_start < right_end and right_start < left_end, dag_tasks.SPANS  # the two intervals overlap


def test_a_timeout_fails_the_step(prefect_server: None, dags: Path) -> None:
    name = _write(dags, """
        name: slow
        steps:
          nap: {task: testing.sleep, timeout_seconds: 0.3, with: {key: nap, seconds: 5}}
        """)
    with pytest.raises(DagRunFailed, match="nap: .*Timeout"):
        _run(name)
    assert "nap" not in dag_tasks.SPANS


def test_the_run_name_says_which_dag_and_what_triggered_it(prefect_server: None, dags: Path) -> None:
    name = _write(dags, """
        name: named
        params: {case_id: {type: integer}}
        trigger: {events: [linli.case.reported], params: {case_id: "{{ trigger.payload.case_id }}"}}
        steps:
          note: {task: testing.record, with: {label: "case {{ params.case_id }}"}}
        """)
    trigger = {"event": "linli.case.reported", "resource_name": "C-20260101-0001", "payload": {"case_id": 7}}
    state = asyncio.run(run_dag(dag=name, trigger=trigger, return_state=True))
    assert state.is_completed() and dag_tasks.RECORDED == ["case 7"]

    async def run_name() -> str:
        async with get_client() as client:
            return (await client.read_flow_run(state.state_details.flow_run_id)).name

    assert asyncio.run(run_name()) == "named ← linli.case.reported · C-20260101-0001"


def test_an_override_block_takes_effect_on_the_next_run(prefect_server: None, dags: Path) -> None:
    name = _write(dags, """
        name: greeting
        steps:
          say: {task: testing.record, with: {label: from the file}}
        """)
    _run(name)
    DagDefinitionBlock(yaml=textwrap.dedent("""
        name: greeting
        steps:
          say: {task: testing.record, with: {label: from the block}}
          also: {task: testing.record, after: [say], with: {label: added step}}
        """)).save(name, overwrite=True)
    _run(name)
    assert dag_tasks.RECORDED == ["from the file", "from the block", "added step"]


def test_a_bad_override_is_refused_and_the_last_good_version_keeps_running(prefect_server: None,
                                                                            dags: Path) -> None:
    name = _write(dags, """
        name: guarded
        steps:
          say: {task: testing.record, with: {label: from the file}}
        """)
    good = "name: guarded\nsteps:\n  say: {task: testing.record, with: {label: last good}}\n"
    bad = "name: guarded\nsteps:\n  say: {task: testing.recrod, with: {label: typo}}\n"
    DagDefinitionBlock(yaml=good).save(name, overwrite=True)
    with pytest.raises(DagInvalid) as refused:
        DagDefinitionBlock(yaml=bad).save(name, overwrite=True)  # saving from Python refuses it at once
    assert "step 'say': unknown task 'testing.recrod'" in refused.value.text("en")
    # The UI saves without Linli's checks: store the bad text the way it would, then run.
    block = DagDefinitionBlock.load(name)
    block.yaml = bad
    Block.save(block, name, overwrite=True)
    _run(name)
    assert dag_tasks.RECORDED == ["last good"]
    kept = DagDefinitionBlock.load(name)
    assert "步骤 'say'" in kept.refused and "未知任务 'testing.recrod'" in kept.refused  # in the setting's language
    assert kept.last_good_yaml == good


def test_each_definition_becomes_a_deployment_with_its_schedule_trigger_and_params_form() -> None:
    definition = load_text(textwrap.dedent("""
        name: typhoon-inspection
        description: Typhoon preparedness inspection every 6 hours during warnings.
        params: {community: {type: string, default: XFL, description: Community code}, limit: 20}
        schedule: {cron: "0 */6 * * *"}
        trigger: {events: [linli.weather.typhoon_warning], match: {prefect.resource.id: "linli.weather.*"}}
        steps:
          check: {task: testing.record, with: {label: "{{ params.community }}"}}
        """), source="typhoon.yaml", registry=dag_tasks_registry())
    deployment = dag_deployment(definition)
    assert deployment.name == "typhoon-inspection"
    assert deployment.parameters == {"dag": "typhoon-inspection", "params": {"community": "XFL", "limit": 20},
                                     "trigger": {}}
    assert deployment.schedules[0].schedule.cron == "0 */6 * * *"
    (trigger,) = deployment.triggers
    assert trigger.expect == {"linli.weather.typhoon_warning"}
    form = deployment._parameter_openapi_schema.properties["params"]["properties"]
    assert form["community"]["type"] == "string" and form["limit"]["default"] == 20
    assert deployment._parameter_openapi_schema.properties["dag"]["readOnly"] is True


def dag_tasks_registry():  # type: ignore[no-untyped-def]
    """The registry with the testing tasks in it."""
    from linli.dag.registry import REGISTRY

    return REGISTRY


def test_the_processes_page_shows_the_graph_last_runs_and_each_steps_last_error(
        prefect_server: None, dags: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL
    from streamlit.testing.v1 import AppTest

    name = _write(dags, """
        name: nightly-check
        description: A check that breaks.
        schedule: {cron: "0 2 * * *"}
        steps:
          broken: {task: testing.flaky, retries: 0, with: {key: nightly, failures: 9}}
          fine: {task: testing.record, with: {label: fine}}
        """)
    with pytest.raises(DagRunFailed):
        _run(name)
    monkeypatch.setenv("LINLI_PREFECT__API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("LINLI_LANGUAGE", "en")
    get_settings.cache_clear()
    app = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
    at = AppTest.from_file(str(app), default_timeout=30).run()
    at.switch_page("views/processes.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="process").select(name).run()
    assert any("cron 0 2 * * *" in m.value for m in at.metric)
    steps, runs = (frame.value for frame in at.dataframe)
    errors = dict(zip(steps["Step"], steps["Last error"], strict=True))
    assert "attempt 1 fails on purpose" in errors["broken"] and errors["fine"] == ""
    assert runs["Run"].tolist() == [f"{name} ← manual"] and "Failed" in runs["State"].iloc[0]


def test_deploy_registers_each_definition_with_its_schedule_and_params_form(prefect_server: None,
                                                                           dags: Path) -> None:
    from flows.deploy import deploy

    name = _write(dags, """
        name: typhoon-check
        params: {hours: {type: integer, default: 6, description: Hours between checks}}
        schedule: {cron: "0 */6 * * *"}
        steps:
          check: {task: testing.record, with: {label: "every {{ params.hours }} h"}}
        """)
    assert name in deploy()  # with any process an earlier test added as a block

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_deployment_by_name(f"dag/{name}")

    deployment = asyncio.run(read())
    assert deployment.parameters == {"dag": name, "params": {"hours": 6}, "trigger": {}}
    assert deployment.schedules[0].schedule.cron == "0 */6 * * *"
    form = deployment.parameter_openapi_schema["properties"]["params"]["properties"]
    assert form["hours"] == {"title": "hours", "description": "Hours between checks", "type": "integer",
                             "default": 6}


def test_an_event_creates_a_run_of_the_dags_deployment_with_the_event_as_trigger(prefect_server: None,
                                                                                   dags: Path) -> None:
    """Prefect's own automation renders the trigger parameters (a runner would then execute the run)."""
    import time

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from flows.deploy import deploy
    from tests.conftest import send_event

    name = _write(dags, """
        name: on-reported
        params: {case_id: {type: integer}}
        trigger:
          events: [linli.test.reported]
          match: {prefect.resource.id: "linli.case.*"}
          params: {case_id: "{{ trigger.payload.case_id }}"}
        steps:
          note: {task: testing.record, with: {label: "case {{ params.case_id }}"}}
        """)
    deploy()

    async def deployment_id() -> Any:
        async with get_client() as client:
            return (await client.read_deployment_by_name(f"dag/{name}")).id

    target = asyncio.run(deployment_id())

    async def runs() -> list[Any]:
        async with get_client() as client:
            return await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[target])))

    # The server loads new automations on a refresh interval (longer under load); until it has, an event
    # starts nothing, so announce again every few seconds until a run appears.
    deadline = time.monotonic() + 90
    found: list[Any] = []
    while not found and time.monotonic() < deadline:
        send_event("linli.test.reported", {"prefect.resource.id": "linli.case.41", "prefect.resource.name": "C-0041"},
                   {"case_id": 41})
        for _ in range(5):
            time.sleep(1)
            found = asyncio.run(runs())
            if found:
                break
    assert found, "no run was created for the event"
    trigger = found[0].parameters["trigger"]
    assert trigger["event"] == "linli.test.reported" and trigger["payload"] == {"case_id": 41}
    assert trigger["resource"] == "linli.case.41" and trigger["resource_name"] == "C-0041"
    assert found[0].parameters["dag"] == name


def test_an_event_whose_payload_does_not_match_runs_no_step(prefect_server: None, dags: Path) -> None:
    name = _write(dags, """
        name: fire-only
        trigger: {events: [linli.case.reported], payload: {category: fire_hazard}}
        steps:
          tell: {task: testing.record, with: {label: "fire {{ trigger.payload.category }}"}}
        """)
    assert _run(name, trigger={"event": "linli.case.reported", "payload": {"category": "noise"}}) == {
        "tell": "skipped"}
    assert _run(name, trigger={"event": "linli.case.reported", "payload": {"category": "fire_hazard"}}) == {
        "tell": "completed"}
    assert dag_tasks.RECORDED == ["fire fire_hazard"]
