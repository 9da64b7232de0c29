"""Telemetry tasks for the telemetry-rollup DAG: partitions ahead, hourly aggregates, expiry of old rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import task

from linli import telemetry
from linli.dag.registry import register
from linli.db import get_engine
from linli.models import utcnow
from linli.settings import get_settings
from tasks.common import transient_only

RETRY = {"retries": 2, "retry_delay_seconds": [1, 5], "retry_condition_fn": transient_only}


@register("telemetry.ensure_partitions")
@task(name="make next months' partitions", **RETRY)
async def ensure_partitions(months_ahead: int = 0) -> list[str]:
    """PostgreSQL: the monthly partitions of the message tables up to N months ahead (0 = setting)."""
    ahead = months_ahead or get_settings().telemetry.partitions_ahead_months
    with get_engine().begin() as conn:
        return telemetry.ensure_partitions(conn, months_ahead=ahead)


@register("telemetry.rollup")
@task(name="hourly telemetry aggregates", **RETRY)
async def rollup() -> dict[str, Any]:
    """Aggregate the closed hours not rolled up yet (count, min, max, avg, last per device and metric)."""
    settings = get_settings().telemetry
    with get_engine().begin() as conn:
        return telemetry.rollup(conn, lookback_hours=settings.rollup_lookback_hours,
                                max_hours=settings.rollup_max_hours).as_dict()


@register("telemetry.expire")
@task(name="expire old telemetry", **RETRY)
async def expire(raw_days: int = 0, rollup_days: int = 0) -> dict[str, int]:
    """Drop raw telemetry past its period (whole partitions on PostgreSQL) and aggregates past theirs."""
    settings = get_settings()
    now = utcnow()
    raw = raw_days or settings.people.telemetry_retention_days
    hourly = rollup_days or settings.telemetry.rollup_retention_days
    with get_engine().begin() as conn:
        dropped = telemetry.expire(conn, "telemetry", now - timedelta(days=raw))
        dropped["hourly_rows"] = telemetry.expire_hourly(conn, now - timedelta(days=hourly))
    return dropped
