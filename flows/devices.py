"""Device health on a schedule (interval editable in the Prefect UI): offline, low battery, polling suspects."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow
from prefect.deployments.runner import RunnerDeployment

from tasks.cases import publish
from tasks.devices import HealthSummary, open_alarm_cases, read_devices, sweep_device_health


@flow(name="device-health", flow_run_name="device-health")
async def device_health(poll_suspects: bool = True) -> HealthSummary:
    """Mark silent devices offline and open one maintenance case each; flag low batteries; poll suspects."""
    health = await sweep_device_health()
    if health.new_alarms:
        opened = await open_alarm_cases(health.new_alarms)
        await publish(opened)
    if poll_suspects and health.suspects:
        await read_devices(health.suspects)
    return health


def device_deployments(*, interval_seconds: int = 60) -> list[RunnerDeployment]:
    """The device-health deployment (its interval can be changed in the Prefect UI)."""
    return [device_health.to_deployment(name="device-health", interval=timedelta(seconds=interval_seconds),
                                        tags=["linli", "devices"], description=(device_health.__doc__ or "").strip())]
