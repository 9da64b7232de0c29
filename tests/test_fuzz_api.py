"""Fuzzing the Open311 API from its own OpenAPI document with schemathesis.

Every operation of `/open311/v2/openapi.json` gets requests generated from its schema (and
variations that break it), sent to the app in-process (ASGI). For every response:

- no 5xx;
- every 4xx is Open311's error format — a list of `{"code": ..., "description": "..."}` — with a
  description that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from sqlalchemy.engine import Engine
from sqlmodel import Session

from linli.api import create_app
from linli.apikeys import create_key
from linli.events import RecordingBus
from linli.notify import RecordingNotifier
from linli.settings import Settings
from linli.storage import LocalObjectStore
from tests.conftest import BACKENDS
from tests.factories import seeded

V2 = "/open311/v2"
EXAMPLES = 50  # per operation and mode (valid by the schema, or not)


# PostgreSQL only: what these tests look for (NUL refused, connections cut) is PostgreSQL's behaviour.
ON_POSTGRES = pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.skipif(
    "postgresql" not in BACKENDS, reason="needs PostgreSQL at 127.0.0.1:5432 (python -m tests.services)"))],
    indirect=True)

@pytest.fixture
def app(settings: Settings, engine: Engine, session: Session, tmp_path: Path) -> Iterator[Any]:
    seeded(session)
    create_key(session, "fuzz-client")
    session.commit()
    yield create_app(settings, engine=engine, bus=RecordingBus(), store=LocalObjectStore(tmp_path / "objects"),
                     notifier=RecordingNotifier(), policy_source=lambda: None)


def check_response(case: Any, response: Any) -> None:
    """No server error; a client error in Open311's format with a description."""
    where = f"{case.method} {case.formatted_path} query={case.query} body={str(case.body)[:300]}"
    assert response.status_code < 500, f"{where} → {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, list) and body, f"{where} → {response.status_code} not Open311: {response.text[:300]}"
        for error in body:
            assert set(error) >= {"code", "description"}, f"{where} → {error}"
            assert error["code"] == response.status_code
            assert isinstance(error["description"], str) and error["description"].strip(), f"{where} → {error}"


@ON_POSTGRES
def test_every_operation_answers_without_5xx_and_with_open311_errors(app: Any) -> None:
    schema = schemathesis.openapi.from_asgi(f"{V2}/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 4, [op.label for op in operations]
    seen: dict[str, set[int]] = {}
    for operation, mode in [(op, mode) for op in operations for mode in GenerationMode]:
        statuses = seen.setdefault(operation.label, set())

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode))  # positive: valid by the schema; negative: not
        def run(case: Any) -> None:
            response = case.call()
            statuses.add(response.status_code)  # noqa: B023 (run() is called in this iteration)
            check_response(case, response)

        try:
            run()
        except Unsatisfiable:
            # An operation without parameters has nothing to break: only its valid requests exist.
            assert mode is GenerationMode.NEGATIVE, operation.label
    # The fuzz reached the code: some requests were refused with 4xx, some answered.
    assert any(s < 300 for codes in seen.values() for s in codes), seen
    assert any(400 <= s < 500 for codes in seen.values() for s in codes), seen


@ON_POSTGRES
def test_a_nul_character_in_a_query_is_a_400_with_a_reason_not_a_500(app: Any) -> None:
    # Found by the fuzz: PostgreSQL refuses NUL in text, which surfaced as a 500.
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        response = client.get(f"{V2}/requests.json", params={"service_request_id": "A\x00B"})
    assert response.status_code == 400
    [error] = response.json()
    assert error["code"] == 400 and "NUL" in error["description"]
