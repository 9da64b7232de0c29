"""The report stage run right here, without an orchestrator: an event bus for small installs and the baseline.

`InlineLoop` takes the place of the Prefect bus: on ``linli.case.reported`` it runs receive →
assess → dispatch in a worker thread, each on its own unit of work, and delivers what each step
queued. It is the same domain code the Prefect tasks call, minus Prefect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Engine

from linli.db import session_scope
from linli.errors import LinliError
from linli.events import CaseEventOut
from linli.loop.assess import assess, receive
from linli.loop.common import LoopConfig
from linli.loop.dispatch import dispatch
from linli.notify import Notifier, deliver

log = logging.getLogger(__name__)


class InlineLoop:
    """An event bus that runs the report stage itself on each reported case."""

    def __init__(self, *, engine: Engine, config: Callable[[], LoopConfig], notifier: Notifier,
                 global_urls: list[str], workers: int = 4) -> None:
        self.engine, self.config, self.notifier, self.global_urls = engine, config, notifier, global_urls
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inline-loop")

    def emit(self, events: Sequence[CaseEventOut]) -> None:
        """Start the report stage for every reported case among `events`."""
        for event in events:
            if event.name == "linli.case.reported":
                self.pool.submit(self.run_report, event.case_id)

    def run_report(self, case_id: int) -> None:
        """receive → assess → dispatch for one case, delivering each step's notifications."""
        config = self.config()
        try:
            for step in (receive, assess, dispatch):
                with session_scope(self.engine) as session:
                    result = step(session, case_id, config=config)
                if result.notifications:
                    with session_scope(self.engine) as session:
                        deliver(session, result.notifications, notifier=self.notifier, global_urls=self.global_urls)
        except LinliError as err:
            log.warning("inline report stage for case %s failed: %s", case_id, err)

    def close(self) -> None:
        """Wait for running stages and stop the workers."""
        self.pool.shutdown(wait=True)
