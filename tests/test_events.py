"""The Prefect event bus's logging: the exit-time flush notice of Prefect's events worker is not shown."""

from __future__ import annotations

import logging

import pytest
from prefect.events.worker import EventsWorker

import linli.events  # noqa: F401  (installs the filter)


def test_the_events_workers_flush_notice_is_dropped_and_its_other_warnings_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    # Prefect's services log as logging.getLogger(type(self).__name__).
    logger = logging.getLogger(EventsWorker.__name__)
    with caplog.at_level(logging.WARNING):
        logger.warning("Still processing items: 1 items remaining...")
        logger.warning("Service 'EventsWorker' failed to process item")
    assert [r.getMessage() for r in caplog.records] == ["Service 'EventsWorker' failed to process item"]
