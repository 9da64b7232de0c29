"""Tasks registered for the DAG runner's tests (`testing.*`): record, sleep, fail a few times."""

from __future__ import annotations

import asyncio
import time

from prefect import task

from linli.dag.registry import register

RECORDED: list[str] = []
SPANS: dict[str, tuple[float, float]] = {}
ATTEMPTS: dict[str, int] = {}


@register("testing.record")
@task(name="record")
async def record(label: str) -> str:
    """Remember `label` (the test reads RECORDED)."""
    RECORDED.append(label)
    return label


@register("testing.sleep")
@task(name="sleep")
async def sleep(key: str, seconds: float) -> float:
    """Sleep, remembering when this step started and ended."""
    start = time.monotonic()
    await asyncio.sleep(seconds)
    SPANS[key] = (start, time.monotonic())
    return seconds


@register("testing.flaky")
@task(name="flaky")
async def flaky(key: str, failures: int) -> int:
    """Fail the first `failures` attempts under `key`, then return the attempt number."""
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] <= failures:
        raise RuntimeError(f"attempt {ATTEMPTS[key]} fails on purpose")
    return ATTEMPTS[key]


@register("testing.count")
@task(name="count")
async def count(items: list[str]) -> int:
    """How many items there are."""
    return len(items)
