"""The warm in-process worker (flows/worker.py) against a real Prefect server (the harness): event-triggered
and scheduled deployment runs execute in it with their parameters, two workers never run one run twice,
a failing run ends Failed while the worker goes on, and shutdown leaves nothing Running."""

from __future__ import annotations

import asyncio
import contextvars
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.states import Scheduled

from flows.dag_runner import run_dag
from flows.deployments import dag_deployment
from flows.worker import WarmWorker
from linli.dag.validate import load_text
from linli.settings import get_settings
from tests import dag_tasks


@pytest.fixture(autouse=True)
def claims_database(database_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The workers record their claims in Linli's database: the session's SQLite one unless a test asks
    for `settings` (each backend in turn)."""
    monkeypatch.setenv("LINLI_DATABASE__URL", database_urls["sqlite"])
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class Running:
    """A worker serving in a background thread (its own event loop), as `linli serve` runs it."""

    def __init__(self, worker: WarmWorker) -> None:
        self.worker = worker
        self.error: list[BaseException] = []
        context = contextvars.copy_context()  # the harness's API URL lives in the settings context
        self.thread = threading.Thread(target=context.run, args=(self._serve,), daemon=True)

    def _serve(self) -> None:
        try:
            asyncio.run(self.worker.serve())
        except BaseException as err:  # noqa: BLE001  (reported by stop())
            self.error.append(err)

    def __enter__(self) -> WarmWorker:
        self.thread.start()
        assert self.worker.ready.wait(60), self.error or "the worker did not start"
        return self.worker

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Ask the worker to stop and wait until it did."""
        self.worker.request_stop()
        self.thread.join(120)
        assert not self.thread.is_alive(), "the worker did not stop"
        assert not self.error, self.error


def _write(folder: Path, text: str) -> str:
    text = textwrap.dedent(text)
    name = text.split("name:", 1)[1].split()[0]
    (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return name


def _worker(folder: Path, name: str, **options: Any) -> WarmWorker:
    from linli.dag.registry import REGISTRY

    definition = load_text((folder / f"{name}.yaml").read_text(encoding="utf-8"), source=name, registry=REGISTRY)
    return WarmWorker([(dag_deployment(definition), run_dag)], poll_seconds=0.5, **options)


def _call(fn: Callable[[Any], Any]) -> Any:
    async def go() -> Any:
        async with get_client() as client:
            return await fn(client)

    return asyncio.run(go())


def _deployment_id(name: str) -> UUID:
    return _call(lambda c: c.read_deployment_by_name(f"dag/{name}")).id  # type: ignore[no-any-return]


def _runs(deployment_id: UUID) -> list[FlowRun]:
    return _call(lambda c: c.read_flow_runs(  # type: ignore[no-any-return]
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))))


def _start_runs(deployment_id: UUID, count: int, **parameters: Any) -> list[UUID]:
    async def create(client: Any) -> list[UUID]:
        runs = [await client.create_flow_run_from_deployment(deployment_id, parameters=parameters or None)
                for _ in range(count)]
        return [run.id for run in runs]

    return _call(create)  # type: ignore[no-any-return]


def _wait_final(run_ids: list[UUID], timeout: float = 90) -> dict[UUID, FlowRun]:
    deadline = time.monotonic() + timeout
    runs: dict[UUID, FlowRun] = {}
    while time.monotonic() < deadline:
        runs = {run_id: _call(lambda c, run_id=run_id: c.read_flow_run(run_id)) for run_id in run_ids}
        if all(run.state is not None and run.state.is_final() for run in runs.values()):
            return runs
        time.sleep(0.5)
    states = {str(k): (r.state.name if r.state else None) for k, r in runs.items()}
    raise AssertionError(f"runs not final within {timeout:.0f} s: {states}")


def test_an_event_triggered_deployment_run_executes_in_the_worker_with_its_parameters(
        prefect_server: None, dags: Path) -> None:
    from tests.conftest import send_event

    name = _write(dags, """
        name: warm-reported
        params: {case_id: {type: integer}, greeting: {type: string, default: hello}}
        trigger:
          events: [linli.test.warm_reported]
          params: {case_id: "{{ trigger.payload.case_id }}"}
        steps:
          note: {task: testing.record, with: {label: "{{ params.greeting }} case {{ params.case_id }}"}}
        """)
    worker = _worker(dags, name)
    with Running(worker):
        target = _deployment_id(name)
        # The server loads new automations on a refresh interval (longer under load); until it has, an
        # event starts nothing, so announce again every few seconds until a run appears.
        deadline = time.monotonic() + 90
        while not _runs(target) and time.monotonic() < deadline:
            send_event("linli.test.warm_reported", {"prefect.resource.id": "linli.case.41"}, {"case_id": 41})
            for _ in range(10):
                time.sleep(0.5)
                if _runs(target):
                    break
        time.sleep(2)  # a repeat that also matched shows up too, and is checked like the first
        runs = _runs(target)
        assert runs, "no run was started by the event"
        finals = _wait_final([r.id for r in runs])
    for final in finals.values():
        assert final.state is not None and final.state.is_completed(), final.state
        assert final.deployment_id == target and final.parameters["trigger"]["payload"] == {"case_id": 41}
        assert final.name == f"{name} ← linli.test.warm_reported"
    # ran here, in this process, with the default param and the event's
    assert set(dag_tasks.RECORDED) == {"hello case 41"} and len(dag_tasks.RECORDED) == len(runs)
    assert sorted(map(str, worker.stats.executed)) == sorted(str(r.id) for r in runs)


def test_a_scheduled_run_executes_in_the_worker(prefect_server: None, dags: Path) -> None:
    name = _write(dags, """
        name: warm-scheduled
        schedule: {interval_seconds: 3600}
        steps:
          tick: {task: testing.record, with: {label: tick}}
        """)
    worker = _worker(dags, name)
    with Running(worker):
        target = _deployment_id(name)
        # What the scheduler service makes for each schedule tick: an auto-scheduled run, due now.
        run = _call(lambda c: c.create_flow_run_from_deployment(
            target, state=Scheduled(scheduled_time=_soon(2)), tags=["auto-scheduled"]))
        final = _wait_final([run.id])[run.id]
        deployment = _call(lambda c: c.read_deployment(target))
    assert final.state is not None and final.state.is_completed(), final.state
    assert final.start_time is not None and final.start_time >= run.next_scheduled_start_time  # not before it was due
    assert dag_tasks.RECORDED == ["tick"]
    assert deployment.paused is False  # shutdown leaves the schedule running


def _soon(seconds: float) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_two_workers_run_each_flow_run_exactly_once(prefect_server: None, dags: Path, settings: Any) -> None:
    name = _write(dags, """
        name: warm-shared
        params: {tag: {type: string, default: x}}
        steps:
          note: {task: testing.record, with: {label: "{{ params.tag }}"}}
        """)
    first, second = _worker(dags, name, limit=4), _worker(dags, name, limit=4)
    with Running(first), Running(second):
        target = _deployment_id(name)
        run_ids = [_start_runs(target, 1, dag=name, params={"tag": f"run {i}"}, trigger={})[0] for i in range(16)]
        finals = _wait_final(run_ids)
    assert all(run.state is not None and run.state.is_completed() for run in finals.values())
    executed = first.stats.executed + second.stats.executed
    assert sorted(map(str, executed)) == sorted(map(str, run_ids))  # every run once, none twice
    assert len(dag_tasks.RECORDED) == len(set(dag_tasks.RECORDED)) == 16


def test_a_worker_with_a_stale_list_does_not_rerun_a_run_another_worker_finished(
        prefect_server: None, dags: Path, settings: Any) -> None:
    # What CI once saw: a worker read the due runs, another claimed one and finished it in ~50 ms, and the
    # first then proposed Pending — which Prefect accepts from Completed (a rerun) — and ran it again.
    name = _write(dags, """
        name: warm-stale
        steps:
          note: {task: testing.record, with: {label: once}}
        """)
    first, second = _worker(dags, name), _worker(dags, name)
    _call(lambda c: second.register())
    target = _deployment_id(name)
    (run_id,) = _start_runs(target, 1)
    stale = _call(lambda c: c.read_flow_run(run_id))  # second's view of the due run: Scheduled
    with Running(first):
        final = _wait_final([run_id])[run_id]
    assert final.state is not None and final.state.is_completed(), final.state
    assert _call(lambda c: second._claim(c, stale)) is False
    assert _call(lambda c: c.read_flow_run(run_id)).state.is_completed()  # not moved back to Pending
    assert dag_tasks.RECORDED == ["once"] and second.stats.lost == 1


def test_a_failing_run_ends_failed_and_the_worker_goes_on(prefect_server: None, dags: Path) -> None:
    name = _write(dags, """
        name: warm-failing
        params: {failures: {type: integer, default: 0}}
        steps:
          step: {task: testing.flaky, retries: 0, with: {key: fail, failures: "{{ params.failures }}"}}
        """)
    worker = _worker(dags, name)
    with Running(worker):
        target = _deployment_id(name)
        (bad,) = _start_runs(target, 1, dag=name, params={"failures": 5}, trigger={})
        bad_final = _wait_final([bad])[bad]
        (good,) = _start_runs(target, 1)
        good_final = _wait_final([good])[good]
    assert bad_final.state is not None and bad_final.state.is_failed(), bad_final.state
    assert good_final.state is not None and good_final.state.is_completed(), good_final.state
    assert worker.stats.finished == {"Failed": 1, "Completed": 1}


def test_shutdown_lets_short_runs_finish_and_leaves_no_run_running(prefect_server: None, dags: Path) -> None:
    name = _write(dags, """
        name: warm-sleeping
        params: {seconds: {type: number, default: 1}}
        steps:
          nap: {task: testing.sleep, with: {key: "nap {{ params.seconds }}", seconds: "{{ params.seconds }}"}}
        """)
    worker = _worker(dags, name, grace_seconds=4)
    running = Running(worker)
    with running:
        target = _deployment_id(name)
        (short,) = _start_runs(target, 1, dag=name, params={"seconds": 2}, trigger={})
        (long,) = _start_runs(target, 1, dag=name, params={"seconds": 120}, trigger={})
        deadline = time.monotonic() + 60
        while len(worker.stats.executed) + len(worker._running) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(worker._running) == 2, "both runs should be running before the shutdown"
        running.stop()  # grace 4 s: the 2 s run finishes, the 120 s one is stopped
        finals = _wait_final([short, long], timeout=10)
        deployment = _call(lambda c: c.read_deployment(target))
    assert finals[short].state is not None and finals[short].state.is_completed(), finals[short].state
    assert finals[long].state is not None and finals[long].state.type.value == "CRASHED", finals[long].state
    assert deployment.paused is False
    (late,) = _start_runs(target, 1)  # claimed by nobody once the worker stopped
    time.sleep(2)
    assert _call(lambda c: c.read_flow_run(late)).state.is_scheduled()


def test_a_run_cancelled_in_prefect_is_stopped_and_ends_cancelled(prefect_server: None, dags: Path) -> None:
    from prefect.states import Cancelling

    name = _write(dags, """
        name: warm-cancelled
        params: {seconds: {type: number, default: 120}}
        steps:
          nap: {task: testing.sleep, with: {key: "cancel {{ params.seconds }}", seconds: "{{ params.seconds }}"}}
          after: {task: testing.record, after: [nap], with: {label: never}}
        """)
    worker = _worker(dags, name)
    with Running(worker):
        target = _deployment_id(name)
        (run_id,) = _start_runs(target, 1)
        deadline = time.monotonic() + 60
        while run_id not in worker._running and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run_id in worker._running, "the run should be running before it is cancelled"
        _call(lambda c: c.set_flow_run_state(run_id, Cancelling(message="from the UI"), force=True))
        final = _wait_final([run_id], timeout=30)[run_id]
    assert final.state is not None and final.state.is_cancelled(), final.state
    assert dag_tasks.RECORDED == []  # the step after the nap never ran
    assert worker.stats.finished == {"Cancelled": 1}
