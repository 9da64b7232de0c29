"""Serve the closed loop's deployments from this process: `python -m flows.serve`."""

from __future__ import annotations

from prefect import serve

from flows.deployments import loop_deployments
from flows.devices import device_deployments
from linli.settings import get_settings


def main() -> None:
    """Register the deployments and run their flows as events and schedules arrive."""
    settings = get_settings()
    # query_seconds=1: a triggered run starts within ~1 s of being scheduled instead of ~10 s.
    # limit=3: each run is a new Python process; more at once only thrash a small machine.
    serve(*loop_deployments(sla_interval_seconds=settings.loop.sla_interval_seconds),
          *device_deployments(interval_seconds=30),
          query_seconds=1, pause_on_shutdown=False, limit=3)


if __name__ == "__main__":
    main()
