"""`linli infra …`: what the production stack (infra/) needs from Linli — broker credentials, the work pool."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from linli.errors import ConfigurationError, DeliveryError
from linli.i18n import t
from linli.settings import PLACEHOLDER_SECRETS, Settings

infra_app = typer.Typer(help="Production stack (infra/): MQTT credentials and ACLs, the Prefect work pool.",
                        no_args_is_help=True)


def _cli() -> ModuleType:
    """linli.cli, whose helpers (_run, console) these commands share; imported late, as it imports us."""
    from linli import cli

    return cli


@infra_app.command("mosquitto")
def infra_mosquitto(
    out: Annotated[Path, typer.Option(help="Folder for `passwd`, `acl` and the hand-off CSV (e.g. infra/mosquitto).")],
    rotate: Annotated[list[str] | None, typer.Option(
        help="Issue a new password for this device code (repeat the option for several).")] = None,
) -> None:
    """Write Mosquitto's password file and per-device ACLs from the device registry.

    The service user is LINLI_MQTT__USERNAME / LINLI_MQTT__PASSWORD. Devices already in the password
    file keep their passwords; new (or rotated) devices get one, written once to credentials-<time>.csv.
    """

    def work(settings: Settings) -> None:
        from linli import db
        from linli.devices.broker_auth import registered_devices, write_broker_auth

        password = settings.mqtt.password.get_secret_value()
        if settings.env == "prod" and password in PLACEHOLDER_SECRETS:
            raise ConfigurationError("LINLI_MQTT__PASSWORD is a placeholder",
                                     hint="set a real password in infra/.env before generating the broker's files")
        db.upgrade(settings.database_url)
        with db.session_scope() as session:
            devices = registered_devices(session)
        result = write_broker_auth(out, devices, service_user=settings.mqtt.username, service_password=password,
                                   shared_group=settings.devices.shared_group, rotate=frozenset(rotate or ()))
        lang = str(settings.language)
        console = _cli().console
        console.print(t("mqtt_auth_written", lang, devices=result.devices, kept=result.kept,
                        issued=len(result.issued), removed=len(result.removed), passwd=result.passwd, acl=result.acl))
        if result.handoff is not None:
            console.print(t("mqtt_auth_handoff", lang, path=result.handoff))
        console.print(t("mqtt_auth_reload", lang))

    _cli()._run(work)


async def ensure_process_pool(name: str) -> bool:
    """Create the process work pool `name` unless it exists; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            pool = await client.read_work_pool(name)
        except ObjectNotFound:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True
    if pool.type != "process":
        raise ConfigurationError(f"work pool {name!r} exists with type {pool.type!r}, not 'process'",
                                 hint="give another --pool, or delete that pool in the Prefect UI")
    return False


@infra_app.command("deploy")
def infra_deploy(pool: Annotated[str, typer.Option(help="The process work pool the workers poll.")] = "linli") -> None:
    """Create the process work pool if needed and register every DAG's deployment on it (idempotent)."""

    def work(settings: Settings) -> None:
        import httpx

        try:
            created = asyncio.run(ensure_process_pool(pool))
        except httpx.HTTPError as err:
            raise DeliveryError(f"cannot reach the Prefect API at {settings.prefect_api_url}: {err}",
                                hint="start the Prefect server first (`docker compose up -d prefect-server`)") from err
        names = importlib.import_module("flows.deploy").deploy(pool)
        lang = str(settings.language)
        console = _cli().console
        console.print(t("pool_ready", lang, pool=pool, state=t("pool_created" if created else "pool_existed", lang)))
        console.print(t("dag_deployed", lang, count=len(names), names=", ".join(names)))

    _cli()._run(work)
