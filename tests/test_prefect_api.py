"""The read-only Prefect client against a real, temporary Prefect server (and a port nobody listens on)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness
from streamlit.testing.v1 import AppTest

from linli import prefect_api
from linli.errors import DeliveryError
from linli.settings import Settings, get_settings

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


@flow(name="linli-test-hello")
def hello(name: str = "邻里") -> str:
    """A flow small enough to run in a test."""
    return f"hello {name}"


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """A temporary Prefect server with one completed run and one scheduled, triggered deployment."""
    with prefect_test_harness(server_startup_timeout=120):
        hello("测试")
        deployment = hello.to_deployment(
            name="hourly-hello", schedule=Cron("0 * * * *", timezone="Asia/Shanghai"),
            triggers=[DeploymentEventTrigger(expect={"linli.case.reported"})],
        )
        deployment.apply()
        yield str(PREFECT_API_URL.value())
        # Prefect's console handler still holds a stream pytest has closed by now, so its "Stopping
        # temporary server" line would print a logging traceback (PrefectHQ/prefect#14845).
        logging.getLogger("prefect").setLevel(logging.WARNING)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_recent_flow_runs_shows_the_completed_run(prefect_api_url: str) -> None:
    runs = prefect_api.recent_flow_runs(prefect_api_url)
    ours = [run for run in runs if run.flow_name == "linli-test-hello"]
    assert len(ours) == 1
    run = ours[0]
    assert (run.state_type, run.state_name) == ("COMPLETED", "Completed")
    assert run.deployment_name is None  # run directly, not through the deployment
    assert run.start_time is not None and run.start_time.tzinfo is not None
    assert run.duration is not None and run.duration.total_seconds() >= 0
    assert all(r.state_type != "SCHEDULED" or r.start_time is None for r in runs)


def test_deployments_summarise_schedule_and_triggers(prefect_api_url: str) -> None:
    rows = {row.name: row for row in prefect_api.deployments(prefect_api_url)}
    row = rows["hourly-hello"]
    assert row.flow_name == "linli-test-hello"
    assert row.schedule == "cron 0 * * * * (Asia/Shanghai)"
    assert row.triggers == 1
    assert row.paused is False


def test_unreachable_server_is_a_delivery_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}/api"
    with pytest.raises(DeliveryError, match="not reachable") as caught:
        prefect_api.recent_flow_runs(url, timeout=2)
    assert url in str(caught.value) and "LINLI_PREFECT__API_URL" in str(caught.value)
    with pytest.raises(DeliveryError, match="not reachable"):
        prefect_api.deployments(url, timeout=2)


def test_schedule_summary_reads_each_kind() -> None:
    summary = prefect_api.schedule_summary([
        {"schedule": {"interval": 60.0, "timezone": "UTC"}, "active": True},
        {"schedule": {"rrule": "FREQ=DAILY"}, "active": False},
    ])
    assert summary == "every 60s (UTC); rrule FREQ=DAILY [inactive]"
    assert prefect_api.schedule_summary([]) == ""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_flow_runs_page_lists_the_run(
    prefect_api_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINLI_PREFECT__API_URL", prefect_api_url)
    get_settings.cache_clear()
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.switch_page("views/flow_runs.py").run()
    assert not at.exception
    shown = "\n".join(str(frame.value.to_csv()) for frame in at.dataframe)
    assert "linli-test-hello" in shown and "hourly-hello" in shown
    assert not at.warning


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_flow_runs_page_explains_an_unreachable_server(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINLI_PREFECT__API_URL", f"http://127.0.0.1:{_free_port()}/api")
    get_settings.cache_clear()
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.switch_page("views/flow_runs.py").run()
    assert not at.exception
    assert any("LINLI_PREFECT__API_URL" in w.value for w in at.warning)
