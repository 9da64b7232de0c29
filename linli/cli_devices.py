"""The device commands: `linli ingest`, `linli simulate`, `linli devices import|list|alarms|ack|clear|command`."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.table import Table

from linli import db
from linli.errors import ValidationError
from linli.i18n import t
from linli.settings import Settings

device_commands = typer.Typer(help="Devices and MQTT.")
devices_app = typer.Typer(help="The device inventory and alarms.", no_args_is_help=True)
device_commands.add_typer(devices_app, name="devices")
datahub_app = typer.Typer(help="Pushes to the city data hub.", no_args_is_help=True)
device_commands.add_typer(datahub_app, name="datahub")


def _cli() -> ModuleType:
    """linli.cli, whose helpers (_run, console) these commands share; imported late, as it imports us."""
    from linli import cli

    return cli


@device_commands.command()
def ingest(
    client_id: Annotated[str, typer.Option(help="MQTT client id; keep it across restarts (persistent session).")] = "",
    status_port: Annotated[int | None, typer.Option(help="Serve counters as JSON on 127.0.0.1:PORT.")] = None,
    report_every: Annotated[float, typer.Option(help="Seconds between counter lines.")] = 10.0,
    retire: Annotated[bool, typer.Option(help="Retire this client id: take what the broker kept for it, then end "
                                         "its session so it no longer gets a share of the messages.")] = False,
    retire_on_stop: Annotated[bool, typer.Option(help="Retire the client id when stopped (Ctrl-C / SIGTERM) "
                                                 "instead of keeping its session: for a demo on a broker that "
                                                 "production may use later.")] = False,
) -> None:
    """Run an ingest replica: MQTT → validated, batched writes, alarms, dead letters. Stops on Ctrl-C / SIGTERM.

    A stopped replica keeps its MQTT session (messages wait for its restart with the same --client-id);
    one that will not come back — scaled down or renamed — must be retired with --retire, or the broker
    keeps a share of every message for it until the session expires.
    """

    def work(settings: Settings) -> None:
        from linli.devices.service import start_ingest
        from linli.logformat import configure_logging, say

        log_format = settings.ops.log_format
        configure_logging(log_format, settings.ops.process_name or "ingest")
        log = logging.getLogger("linli.ingest")
        db.upgrade(settings.database_url)
        # The ingest process is its own: a thread back from the database or a socket (an alarm's notify
        # worker) gets the GIL from the busy bulk writer after 0.5 ms instead of Python's 5 ms, which
        # an alarm paid on each of its ~40 round trips under load.
        sys.setswitchinterval(0.0005)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        replica = start_ingest(settings, client_id=client_id or f"linli-ingest-{settings.mqtt.port}",
                               status_port=status_port)
        lang = str(settings.language)
        show = _cli().console.print
        say(log_format, log, t("ingest_running", lang, host=settings.mqtt.host, port=settings.mqtt.port,
                               client=replica.service.client_id), show)
        if retire:
            replica.stop(retire=True)
            counters = replica.service.snapshot()
            say(log_format, log, t("ingest_counters", lang, **counters), show, **counters)
            return
        try:
            while not stop.wait(report_every):
                counters = replica.service.snapshot()
                say(log_format, log, t("ingest_counters", lang, **counters), show, **counters)
        except KeyboardInterrupt:
            pass
        finally:
            replica.stop(retire=retire_on_stop, retire_timeout=10.0)
            counters = replica.service.snapshot()
            say(log_format, log, t("ingest_counters", lang, **counters), show, **counters)

    _cli()._run(work)


@devices_app.command("import")
def devices_import(file: Annotated[Path, typer.Argument(help="CSV: code,device_type,community,building,floor,"
                                                              "name,heartbeat_seconds,firmware")]) -> None:
    """Register devices from a CSV file: every row, or — if any row is bad — none, with each bad row named."""

    def work(settings: Settings) -> None:
        from linli.devices.inventory import import_csv

        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValidationError(f"cannot read {file}: {err}", field="file",
                                  hint="give a UTF-8 CSV file") from err
        db.upgrade(settings.database_url)
        with db.session_scope() as session:
            added = import_csv(session, text)
        _cli().console.print(t("devices_imported", str(settings.language), count=len(added)))

    _cli()._run(work)


@devices_app.command("list")
def devices_list(state: Annotated[str | None, typer.Option(help="online, offline or maintenance.")] = None) -> None:
    """List devices with their state, battery and last time heard from."""

    def work(settings: Settings) -> None:
        from sqlmodel import select

        from linli.models import Device

        with db.session_scope() as session:
            query = select(Device).order_by(Device.code)
            if state:
                query = query.where(Device.state == state)
            rows = session.exec(query).all()
        table = Table("code", "type", "state", "battery", "last seen")
        for d in rows:
            table.add_row(d.code, d.device_type, str(d.state), "" if d.battery is None else f"{d.battery}%",
                          d.last_seen.isoformat(timespec="seconds") if d.last_seen else "—")
        _cli().console.print(table)

    _cli()._run(work)


@devices_app.command("alarms")
def devices_alarms() -> None:
    """List open alarms, most severe first."""

    def work(settings: Settings) -> None:
        from linli.devices.alarms import active_alarms
        from linli.devices.registry import alarm_name

        lang = str(settings.language)
        with db.session_scope() as session:
            rows = active_alarms(session)
        table = Table("id", "alarm", "severity", "status", "device", "count", "last")
        for a in rows:
            table.add_row(str(a.id), alarm_name(a.alarm_type, lang), str(a.severity), str(a.status),
                          str(a.device_id), str(a.count), a.last_at.isoformat(timespec="seconds"))
        _cli().console.print(table)

    _cli()._run(work)


@devices_app.command("ack")
def devices_ack(alarm: int, by: Annotated[str, typer.Option(help="Who, e.g. staff:3.")]) -> None:
    """Acknowledge an alarm (active → acknowledged)."""
    _alarm_step("acknowledge", alarm, by)


@devices_app.command("clear")
def devices_clear(alarm: int, by: Annotated[str, typer.Option(help="Who, e.g. staff:3.")]) -> None:
    """Clear an alarm (→ cleared); a new trigger then opens a new alarm."""
    _alarm_step("clear", alarm, by)


def _alarm_step(step: str, alarm_id: int, by: str) -> None:
    def work(settings: Settings) -> None:
        from linli.devices import alarms

        with db.session_scope() as session:
            alarm = getattr(alarms, step)(session, alarm_id, by=by)
        _cli().console.print(t("done", str(settings.language), what=f"alarm {alarm.id} {alarm.status}"))

    _cli()._run(work)


@device_commands.command()
def simulate(
    buildings: Annotated[int, typer.Option(min=1, help="Buildings to equip (sample buildings first).")] = 4,
    per_type: Annotated[int, typer.Option(min=1, help="Devices of every type per building.")] = 1,
    rate: Annotated[float, typer.Option(min=0.1, help="Messages per second, all devices together.")] = 50.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")] = None,
    alarm_every: Annotated[float, typer.Option(help="Seconds between simulated alarms (0: none).")] = 60.0,
    fault_share: Annotated[float, typer.Option(min=0, max=1, help="Share of messages that are malformed.")] = 0.001,
    heartbeat: Annotated[int | None, typer.Option(min=5, help="Register devices with this heartbeat (s).")] = None,
    mute: Annotated[int, typer.Option(min=0, help="This many devices fall silent after --mute-after s.")] = 0,
    mute_after: Annotated[float, typer.Option(help="Seconds before the muted devices fall silent.")] = 60.0,
    alone: Annotated[int, typer.Option(min=0, help="Residents living alone to watch, each with a door magnet.")] = 0,
    silent_alone: Annotated[int, typer.Option(
        min=0, help="Of those, this many never open their door (the next care-watch run opens a welfare check).")] = 0,
) -> None:
    """Simulate a community's devices over MQTT: telemetry, heartbeats, events, access and vehicle records."""

    def work(settings: Settings) -> None:
        from linli.devices.simulator import DeviceSimulator, SimulatorOptions, equip, watch_living_alone
        from linli.errors import ValidationError

        if silent_alone > alone:
            raise ValidationError("--silent-alone cannot exceed --alone", field="silent_alone")
        db.upgrade(settings.database_url)
        with db.session_scope() as session:
            fleet = equip(session, buildings=buildings, per_type=per_type, heartbeat_seconds=heartbeat)
            watched = watch_living_alone(session, fleet, count=alone, silent=silent_alone) if alone else []
        shut = frozenset(w.door for w in watched if w.silent)
        sim = DeviceSimulator(fleet, SimulatorOptions(host=settings.mqtt.host, port=settings.mqtt.port,
                                                      username=settings.mqtt.username,
                                                      password=settings.mqtt.password.get_secret_value(),
                                                      rate=rate, alarm_every=alarm_every, fault_share=fault_share,
                                                      mute=mute, mute_after=mute_after, shut_doors=shut))
        lang = str(settings.language)
        for w in watched:
            _cli().console.print(t("simulating_alone", lang, resident=w.resident_id, door=w.door,
                                   state=t("alone_silent" if w.silent else "alone_active", lang)))
        _cli().console.print(t("simulating", lang, devices=len(fleet), rate=rate))
        started = time.monotonic()
        try:
            sim.run(duration=duration)
        except KeyboardInterrupt:
            pass
        finally:
            sim.stop()
        _cli().console.print(t("simulated", lang, sent=sim.sent, seconds=round(time.monotonic() - started, 1)))

    _cli()._run(work)


@devices_app.command("command")
def devices_command(
    device: Annotated[str, typer.Argument(help="Device code.")],
    command: Annotated[str, typer.Argument(help="broadcast, open_gate, reset, read …")],
    text: Annotated[str, typer.Option(help="Text to speak (broadcast).")] = "",
    by: Annotated[str, typer.Option(help="Who asks, e.g. staff:3.")] = "cli",
) -> None:
    """Send a downlink command and wait for the device's answer (or the timeout)."""

    def work(settings: Settings) -> None:
        from linli.devices import commands

        mqtt = settings.mqtt
        args = {"text": text} if text else {}
        with commands.MqttPublisher(mqtt.host, mqtt.port, username=mqtt.username,
                                    password=mqtt.password.get_secret_value()) as publish, \
                db.session_scope() as session:
            row = commands.send(session, publish, device_code=device, command=command, args=args,
                                requested_by=by, timeout_seconds=settings.devices.command_timeout_seconds)
        row = commands.wait_for_answer(db.get_engine(), row.cmd_id)
        _cli().console.print(t("done", str(settings.language), what=f"{command} → {device}: {row.status} {row.result}"))

    _cli()._run(work)


@datahub_app.command("status")
def datahub_status() -> None:
    """Each endpoint's cursor: delivered, parked, how far behind, last error."""

    def work(settings: Settings) -> None:
        from linli.datahub import status

        with db.session_scope() as session:
            rows = status(session)
        table = Table("endpoint", "status", "delivered", "parked", "behind", "last error")
        for row in rows:
            table.add_row(row["endpoint"], row["status"], str(row["delivered"]), str(row["parked"]),
                          str(row["behind"]), row["last_error"][:60])
        _cli().console.print(table)

    _cli()._run(work)


@datahub_app.command("replay")
def datahub_replay(endpoint: Annotated[str, typer.Argument(help="Endpoint (block) name.")]) -> None:
    """Send an endpoint's parked records again (the receiver drops duplicates by idempotency key)."""

    def work(settings: Settings) -> None:
        from linli.datahub import replay_parked

        with db.session_scope() as session:
            count = replay_parked(session, endpoint)
        _cli().console.print(t("done", str(settings.language), what=f"{count} parked record(s) → {endpoint}"))

    _cli()._run(work)


@datahub_app.command("push")
def datahub_push(
    url: Annotated[str, typer.Option(help="Receiver URL (without a block: defaults for everything else).")],
    name: Annotated[str, typer.Option(help="Endpoint name (its cursor).")] = "cli",
    seconds: Annotated[float, typer.Option(help="Keep pushing this long (0: until caught up once).")] = 0,
) -> None:
    """Push outbox records to one URL with the default policy (masking ID numbers and plates)."""

    def work(settings: Settings) -> None:
        import httpx

        from linli.datahub import EndpointConfig, push_until_caught_up

        endpoint = EndpointConfig(name=name, url=url)
        stop_at = time.monotonic() + seconds
        sent = 0
        with httpx.Client() as client:
            while True:
                results = push_until_caught_up(db.get_engine(), endpoint, client=client,
                                               templates_dir=settings.templates_dir)
                sent += sum(r.sent for r in results)
                if time.monotonic() >= stop_at:
                    break
                time.sleep(1)
        _cli().console.print(t("done", str(settings.language), what=f"{sent} record(s) → {url}"))

    _cli()._run(work)
