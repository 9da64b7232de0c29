"""Notification tasks: deliver what a step queued, through Apprise, recording each outcome."""

from __future__ import annotations

from prefect import task

from linli.db import session_scope
from linli.notify import AppriseNotifier, deliver
from linli.settings import get_settings
from tasks.common import transient_only


@task(name="deliver notifications", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only)
def deliver_notifications(notification_ids: list[int]) -> dict[str, int]:
    """Send queued notifications; returns how many ended in each status."""
    if not notification_ids:
        return {}
    settings = get_settings()
    notifier = AppriseNotifier(timeout_seconds=settings.notify.timeout_seconds)
    with session_scope() as session:
        rows = deliver(session, notification_ids, notifier=notifier, global_urls=settings.notify.urls)
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.status)] = counts.get(str(row.status), 0) + 1
    return counts
