"""After a person's step committed (CLI, dashboard): deliver what it queued and announce its events."""

from __future__ import annotations

import logging

import httpx

from linli import db
from linli.events import PrefectEventBus
from linli.loop.common import StepResult
from linli.notify import AppriseNotifier, deliver
from linli.settings import Settings

log = logging.getLogger(__name__)


def prefect_reachable(settings: Settings) -> bool:
    """Whether the configured Prefect API answers its health check."""
    try:
        return httpx.get(f"{settings.prefect_api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def publish_result(result: StepResult, settings: Settings) -> bool:
    """Deliver the step's notifications, then emit its events when Prefect is up; whether they were emitted.

    With Prefect down the case is still saved; the SLA watch restarts idle stages once it runs.
    """
    if result.notifications:
        with db.session_scope() as session:
            deliver(session, result.notifications, notifier=AppriseNotifier(settings.notify.timeout_seconds),
                    global_urls=settings.notify.urls)
    if not result.events:
        return True
    if not prefect_reachable(settings):
        log.warning("Prefect not reachable at %s; events of %s not sent", settings.prefect_api_url,
                    result.case_number)
        return False
    PrefectEventBus().emit(result.events)
    return True
