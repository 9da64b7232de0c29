"""Device tasks: health sweep, alarm cases, downlink commands (also usable from low-code DAGs)."""

from __future__ import annotations

from typing import Any

from prefect import task
from pydantic import BaseModel, Field

from linli.dag.registry import register
from linli.db import get_engine, session_scope
from linli.devices import commands
from linli.devices.fastpath import open_alarm_case
from linli.devices.health import sweep
from linli.events import CaseEventOut
from linli.loop import StepResult
from linli.models import utcnow
from linli.settings import get_settings
from linli.storage import make_store
from tasks.common import transient_only
from tasks.policy import current_loop_config

RETRY = {"retries": 3, "retry_delay_seconds": [1, 5, 15], "retry_condition_fn": transient_only}


class HealthSummary(BaseModel):
    """What one device-health sweep found."""

    offline: list[str] = Field(default_factory=list)
    back_online: list[str] = Field(default_factory=list)
    low_battery: list[str] = Field(default_factory=list)
    suspects: list[str] = Field(default_factory=list)
    new_alarms: list[tuple[int, str]] = Field(default_factory=list)
    commands_timed_out: int = 0


class CommandSummary(BaseModel):
    """A downlink command and how it ended."""

    cmd_id: str
    device: str
    command: str
    status: str
    result: dict[str, Any] = Field(default_factory=dict)


@register("devices.sweep_health")
@task(name="sweep device health", **RETRY)
async def sweep_device_health() -> HealthSummary:
    """Offline devices (silent > factor × heartbeat), devices back, low batteries, expired commands."""
    settings = get_settings()
    now = utcnow()
    with session_scope() as session:
        report = sweep(session, now=now, factor=settings.devices.offline_factor,
                       low_battery=settings.devices.low_battery_percent)
        expired = commands.expire(session, now=now)
    return HealthSummary(offline=report.offline, back_online=report.back_online, low_battery=report.low_battery,
                         suspects=report.suspects, new_alarms=report.new_alarms, commands_timed_out=expired)


@register("devices.open_alarm_cases")
@task(name="open maintenance cases", **RETRY)
async def open_alarm_cases(alarms: list[tuple[int, str]]) -> StepResult:
    """One case per new alarm (never twice); the events to announce them come back for `publish`."""
    settings = get_settings()
    config, store, engine = current_loop_config(), make_store(settings), get_engine()
    events: list[CaseEventOut] = []
    for alarm_id, category in alarms:
        _case_id, out = open_alarm_case(engine, alarm_id, category, config=config, store=store)
        events += out
    # case_id 0: the result of several cases, announced by `cases.publish` like any step's
    return StepResult(case_id=0, case_number="", status="", detail=f"{len(events)} case(s) opened", events=events)


@register("devices.send_command")
@task(name="send device command", retries=2, retry_delay_seconds=[2, 5])
async def send_command(device: str, command: str, args: dict[str, Any] | None = None, requested_by: str = "flow",
                       wait: bool = True) -> CommandSummary:
    """Send `command` (broadcast, open_gate, reset, read …) to a device; wait for its cmd_ack or the timeout."""
    settings = get_settings()
    mqtt = settings.mqtt
    with commands.MqttPublisher(mqtt.host, mqtt.port, username=mqtt.username,
                                password=mqtt.password.get_secret_value()) as publish, session_scope() as session:
        row = commands.send(session, publish, device_code=device, command=command, args=args,
                            requested_by=requested_by, timeout_seconds=settings.devices.command_timeout_seconds)
    if wait:
        row = commands.wait_for_answer(get_engine(), row.cmd_id)
    return CommandSummary(cmd_id=row.cmd_id, device=device, command=command, status=str(row.status),
                          result=row.result)


@register("devices.read")
@task(name="read suspect devices")
async def read_devices(codes: list[str]) -> int:
    """Send a `read` to each device that has missed a heartbeat; an answer counts as being heard from."""
    settings = get_settings()
    mqtt = settings.mqtt
    with commands.MqttPublisher(mqtt.host, mqtt.port, username=mqtt.username,
                                password=mqtt.password.get_secret_value()) as publish, session_scope() as session:
        for code in codes:
            commands.send(session, publish, device_code=code, command="read", requested_by="flow:device-health",
                          timeout_seconds=settings.devices.command_timeout_seconds)
    return len(codes)
