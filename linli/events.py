"""Case events: what the loop announces after each committed step, so the next stage starts.

Names are ``linli.case.<what>``; the resource is ``linli.case.<id>``. The Prefect bus sends them
to Prefect's event system, where deployment triggers start the next governance flow; the
recording bus keeps them in memory for tests and for runs without an orchestrator.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import field
from typing import Any, Protocol, runtime_checkable

from pydantic.dataclasses import dataclass

log = logging.getLogger(__name__)

PREFIX = "linli.case."


class _QuietFlush(logging.Filter):
    """Drops Prefect's "Still processing items: N items remaining..." (its events worker, at exit).

    It is printed whenever a process ends with an event still to send — after every `linli report`
    and every other command that announces a step — and the wait it reports is the delivery itself.
    Its other warnings and errors pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Still processing items")


logging.getLogger("EventsWorker").addFilter(_QuietFlush())


@dataclass(frozen=True)
class CaseEventOut:
    """One event about one case."""

    name: str
    case_id: int
    case_number: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def resource_id(self) -> str:
        """Prefect resource id of the case."""
        return f"{PREFIX}{self.case_id}"


def case_event(what: str, case_id: int, case_number: str, **payload: Any) -> CaseEventOut:
    """Build the event `linli.case.<what>` for a case."""
    return CaseEventOut(f"{PREFIX}{what}", case_id, case_number, {"case_id": case_id, **payload})


@dataclass(frozen=True)
class SignalOut:
    """An event about something other than one case, e.g. ``linli.datahub.pending`` on the data-hub outbox."""

    name: str
    resource_id: str
    resource_name: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class SignalBus(Protocol):
    """A bus that also carries signals (the Prefect and recording buses do)."""

    def signal(self, event: SignalOut) -> None:
        """Send one signal; must not raise for a missing orchestrator (schedules cover for it)."""


class EventBus(Protocol):
    """Where case events go once their step is committed."""

    def emit(self, events: Sequence[CaseEventOut]) -> None:
        """Send the events; must not raise for a missing orchestrator (the SLA watch re-emits)."""


class RecordingBus:
    """Keeps events in memory (tests, and runs with no orchestrator)."""

    def __init__(self) -> None:
        self.events: list[CaseEventOut] = []
        # bounded: a long-running ingest without Prefect signals every few seconds, and nobody reads them
        self.signals: deque[SignalOut] = deque(maxlen=1000)

    def emit(self, events: Sequence[CaseEventOut]) -> None:
        """Remember the events."""
        self.events.extend(events)

    def signal(self, event: SignalOut) -> None:
        """Remember the signal (the last 1,000)."""
        self.signals.append(event)

    def names(self) -> list[str]:
        """Event names in the order they were emitted."""
        return [event.name for event in self.events]


class PrefectEventBus:
    """Sends events to Prefect's event system (the API in PREFECT_API_URL)."""

    def emit(self, events: Sequence[CaseEventOut]) -> None:
        """Queue each event on Prefect's background events worker (drained at exit)."""
        from prefect.events import emit_event

        for event in events:
            emit_event(
                event=event.name,
                resource={"prefect.resource.id": event.resource_id, "prefect.resource.name": event.case_number,
                          "linli.case.number": event.case_number},
                payload=event.payload,
            )
            log.debug("emitted %s for case %s", event.name, event.case_number)

    def signal(self, event: SignalOut) -> None:
        """Queue one signal on Prefect's background events worker."""
        from prefect.events import emit_event

        resource = {"prefect.resource.id": event.resource_id}
        if event.resource_name:
            resource["prefect.resource.name"] = event.resource_name
        emit_event(event=event.name, resource=resource, payload=event.payload)
        log.debug("emitted %s for %s", event.name, event.resource_id)
