"""Messaging tasks for DAG steps: send a templated notification to a list of people, now."""

from __future__ import annotations

from typing import Any

from prefect import task

from linli.dag.registry import register
from linli.db import session_scope
from linli.notify import AppriseNotifier, deliver, queue, recipient_context
from linli.settings import get_settings
from tasks.common import transient_only


@register("notify.send")
@task(name="send notification", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only)
async def send(targets: list[str], kind: str, template: str, context: dict[str, Any] | None = None,
               case_id: int | None = None) -> dict[str, int]:
    """Render `template` (templates/notifications/<template>.<lang>.md.j2) for each target and deliver it."""
    settings = get_settings()
    lang = str(settings.language)
    name = template if template.endswith(".j2") else f"{template}.{lang}.md.j2"
    with session_scope() as session:
        ids = [queue(session, kind=kind, target=target, template=name, language=lang, case_id=case_id,
                     templates_dir=settings.templates_dir,
                     context={**(context or {}), "recipient": recipient_context(session, target)}).id
               for target in targets]
    counts: dict[str, int] = {"queued": len(ids)}
    if ids:
        notifier = AppriseNotifier(timeout_seconds=settings.notify.timeout_seconds)
        with session_scope() as session:
            for row in deliver(session, [i for i in ids if i is not None], notifier=notifier,
                               global_urls=settings.notify.urls):
                counts[str(row.status)] = counts.get(str(row.status), 0) + 1
    return counts
