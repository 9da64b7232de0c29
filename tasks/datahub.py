"""Data-hub tasks: load the endpoint blocks, push each endpoint until it is caught up."""

from __future__ import annotations

import asyncio

import httpx
from prefect import task
from pydantic import BaseModel

from blocks.datahub import DatahubEndpoint
from linli.dag.registry import register
from linli.datahub import EndpointConfig, PushResult, push_until_caught_up
from linli.db import get_engine
from linli.loop import StepResult
from linli.settings import get_settings


class PushSummary(BaseModel):
    """What pushing one endpoint did in one run."""

    endpoint: str
    sent: int
    parked: int
    failures: int
    caught_up: bool
    alerts: list[int] = []


async def load_endpoints(names: list[str] | None = None) -> list[EndpointConfig]:
    """The endpoints saved as data-hub endpoint blocks (all of them, or those named)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        documents = await client.read_block_documents_by_type(DatahubEndpoint.get_block_type_slug())
    chosen = [d for d in documents if d.name and (names is None or d.name in names)]
    return [DatahubEndpoint.model_validate(d.data).config(d.name) for d in chosen if d.name]  # type: ignore[arg-type]


async def push_endpoint(endpoint: EndpointConfig, deadline_seconds: float = 50) -> PushSummary:
    """Push batch after batch (retrying with backoff, parking after N failures) until caught up or the deadline."""
    settings = get_settings()

    def push() -> list[PushResult]:
        with httpx.Client() as client:
            return push_until_caught_up(get_engine(), endpoint, client=client, deadline_seconds=deadline_seconds,
                                        templates_dir=settings.templates_dir)

    # In a thread: the warm worker runs every flow on one event loop, which a push of up to
    # `deadline_seconds` must not hold up (and two runs pushing at once are safe: see linli.datahub).
    results = await asyncio.to_thread(push)
    alerts = [i for r in results for i in (r.alerts or [])]
    return PushSummary(endpoint=endpoint.name, sent=sum(r.sent for r in results),
                       parked=sum(r.parked for r in results), failures=sum(1 for r in results if r.failed),
                       caught_up=bool(results and results[-1].caught_up), alerts=alerts)


@register("datahub.push")
@task(name="push every data-hub endpoint")
async def push_all(endpoints: list[str] | None = None, deadline_seconds: float = 50) -> StepResult:
    """Push each endpoint block (all, or those named) until caught up; parked batches' alerts come back to publish.

    One task run, not one per endpoint: ingest's announcements start a run every few seconds while
    records flow, and each task run costs Prefect's server several writes (its result names each endpoint).
    """
    chosen = await load_endpoints(endpoints or None)
    pushed = [await push_endpoint(endpoint, deadline_seconds) for endpoint in chosen]
    detail = "; ".join(f"{p.endpoint}: {p.sent} sent, {p.parked} parked{'' if p.caught_up else ', behind'}"
                       for p in pushed) or "no data-hub endpoint blocks saved"
    # case_id 0: not one case's step; `cases.publish` delivers the parked-batch alerts all the same
    return StepResult(case_id=0, case_number="", status="", detail=detail,
                      notifications=[i for p in pushed for i in p.alerts])
