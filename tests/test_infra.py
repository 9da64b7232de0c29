"""infra/: every variable is a real setting, every image pinned, every service watched; the broker's ACLs hold.

The compose file cannot run here (no Docker Hub), so it is checked by reading it; the Mosquitto
files `linli infra mosquitto` generates are checked on a real Mosquitto started with
infra/mosquitto/mosquitto.conf on a free port.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel
from sqlalchemy import Engine, func, select
from sqlmodel import Session
from typer.testing import CliRunner

from linli.cli import app
from linli.devices import broker_auth
from linli.devices.broker_auth import BrokerDevice, hash_password, read_passwd, verify_password, write_broker_auth
from linli.devices.protocol import Kind, subscription, topic
from linli.devices.registry import RuleBook
from linli.errors import ConfigurationError, ValidationError
from linli.events import RecordingBus
from linli.models import Telemetry
from linli.settings import Settings, get_settings
from tests.device_factories import devices
from tests.mqtt_broker import free_port, mosquitto_path, run_broker

INFRA = Path(__file__).resolve().parents[1] / "infra"
COMPOSE = yaml.safe_load((INFRA / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# Variables the stack sets that are not Linli's, each for a reason.
KNOWN_OTHER = {
    "POSTGRES_USER", "POSTGRES_PASSWORD",  # the postgres image's superuser
    "POSTGRES_LINLI_PASSWORD", "POSTGRES_PREFECT_PASSWORD",  # infra/postgres/init.sh: the two databases' owners
    "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_BROWSER_REDIRECT_URL",  # the minio image
    "PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_UI_API_URL", "PREFECT_WORKER_WEBSERVER_HOST", "PREFECT_WORKER_WEBSERVER_PORT",  # Prefect's own
    "PREFECT_WORKERS",  # compose.yaml: worker replicas
    "IMAGE_TAG",  # compose.yaml: the tag of the image built from infra/Dockerfile
    "DO_NOT_TRACK",  # Prefect and others: no telemetry
    "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK",  # Dockerfile
}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}")


def linli_variables(model: type[BaseModel] = Settings, prefix: str = "LINLI_") -> set[str]:
    """Every environment variable Settings reads: LINLI_<FIELD>, and LINLI_<GROUP>__<FIELD> for groups."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= linli_variables(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def env_example() -> dict[str, str]:
    """infra/.env.example as a dict."""
    values: dict[str, str] = {}
    for line in (INFRA / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example line without '=': {line!r}"
            values[key.strip()] = value.strip()
    return values


def dockerfile_env() -> set[str]:
    """Variables set by ENV in infra/Dockerfile."""
    text = (INFRA / "Dockerfile").read_text().replace("\\\n", " ")
    return {name for line in text.splitlines() if line.startswith("ENV ")
            for name in re.findall(r"([A-Z][A-Z0-9_]*)=", line)}


def k8s_variables() -> set[str]:
    """Variables the Kubernetes example sets (POD_NAME is the pod's own name, from the downward API)."""
    names: set[str] = set()
    for document in yaml.safe_load_all((INFRA / "k8s" / "ingest.yaml").read_text()):
        for container in document["spec"]["template"]["spec"]["containers"]:
            names |= {item["name"] for item in container.get("env", [])} - {"POD_NAME"}
    return names


def compose_variables() -> set[str]:
    """Variables compose sets in containers (environment keys) or reads from .env (${…})."""
    names = {key for service in SERVICES.values() for key in (service.get("environment") or {})}
    names |= {match.group(1) for match in INTERPOLATION.finditer((INFRA / "compose.yaml").read_text())}
    return names


def interpolate(value: str, env: dict[str, str]) -> str:
    """What compose makes of `value` given `env` (the subset of its syntax compose.yaml uses)."""
    return INTERPOLATION.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def test_every_linli_variable_is_a_setting_and_every_other_one_is_known() -> None:
    settings = linli_variables()
    assert "LINLI_DATABASE__URL" in settings and "LINLI_ENV" in settings  # the walk itself works
    used = compose_variables() | set(env_example()) | dockerfile_env() | k8s_variables()
    assert "LINLI_MQTT__HOST" in k8s_variables()
    unknown_linli = sorted(name for name in used if name.startswith("LINLI_") and name not in settings)
    assert not unknown_linli, f"not Linli settings (a typo is silently ignored): {unknown_linli}"
    others = sorted(name for name in used if not name.startswith("LINLI_") and name not in KNOWN_OTHER)
    assert not others, f"variables nobody declared known: {others}"


def test_every_variable_compose_reads_is_in_the_example_env() -> None:
    example = env_example()
    required = {m.group(1) for m in INTERPOLATION.finditer((INFRA / "compose.yaml").read_text())}
    assert sorted(required - set(example)) == []
    assert example["LINLI_ENV"] == "prod"


def _service_env(name: str, example: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), example) for key, value in SERVICES[name]["environment"].items()}


def test_linli_refuses_the_example_secrets_and_accepts_the_services_env_once_they_are_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    example = env_example()
    for name in list(os.environ):
        if name.startswith("LINLI_"):
            monkeypatch.delenv(name)
    for key, value in _service_env("api", example).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="LINLI_STORAGE__SECRET_KEY"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    changed = {key: ("s3cret-" + key.lower() if value == "changeme" else value) for key, value in example.items()}
    for service in ("api", "ingest-1", "worker", "dashboard", "migrate", "deploy"):
        for key, value in _service_env(service, changed).items():
            monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.env == "prod" and settings.storage.backend == "minio", service
        assert settings.database.url.startswith("postgresql+psycopg://linli:s3cret-"), service
        assert settings.mqtt.username == "linli-service" and settings.mqtt.password.get_secret_value(), service


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and bool(re.search(r"\d", tag))


def test_every_image_is_pinned() -> None:
    example = env_example()
    images = {name: interpolate(service["image"], example) for name, service in SERVICES.items()}
    assert all(images.values()), images
    assert {name: image for name, image in images.items() if not _pinned(image)} == {}
    assert not any(_pinned(image) for image in ("postgres", "postgres:latest", "minio/minio:edge"))
    base = re.search(r"^FROM (\S+)", (INFRA / "Dockerfile").read_text(), re.M)
    assert base and _pinned(base.group(1)) and "slim-bookworm" in base.group(1)
    k8s = yaml.safe_load((INFRA / "k8s" / "ingest.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]
    assert _pinned(k8s["image"]) and k8s["args"][:3] == ["ingest", "--client-id", "$(POD_NAME)"]
    # Linli's own image is built here, from this checkout.
    assert {name for name, s in SERVICES.items() if "build" in s} == \
           {name for name, image in images.items() if image.startswith("linli:")}


def _one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "")) == "no"


def test_every_long_running_service_has_a_healthcheck_and_waits_for_what_it_needs() -> None:
    long_running = {name for name, s in SERVICES.items() if not _one_shot(s)}
    assert {"postgres", "minio", "mosquitto", "prefect-server", "worker", "ingest-1", "ingest-2", "api",
            "dashboard"} <= long_running
    assert {name for name, s in SERVICES.items() if _one_shot(s)} == {"migrate", "deploy"}
    for name in long_running:
        check = SERVICES[name].get("healthcheck", {}).get("test")
        assert check and check[0] in ("CMD", "CMD-SHELL"), name
    for name, service in SERVICES.items():
        for needed, how in (service.get("depends_on") or {}).items():
            condition = how["condition"]
            assert condition == ("service_completed_successfully" if _one_shot(SERVICES[needed])
                                 else "service_healthy"), (name, needed)
    assert SERVICES["migrate"]["command"] == ["db", "upgrade"]
    assert SERVICES["worker"]["entrypoint"] == ["prefect"]
    assert SERVICES["worker"]["command"][:6] == ["worker", "start", "--pool", "linli", "--type", "process"]
    assert SERVICES["deploy"]["command"] == ["infra", "deploy", "--pool", "linli"]
    ingests = [s for name, s in SERVICES.items() if name.startswith("ingest-")]
    ids = [s["command"][s["command"].index("--client-id") + 1] for s in ingests]
    assert len(ingests) >= 2 and len(set(ids)) == len(ids)  # one persistent session each
    assert {"pgdata", "minio-data", "mosquitto-data"} <= set(COMPOSE["volumes"])


def test_every_published_port_binds_127_0_0_1() -> None:
    published = [(name, str(port)) for name, s in SERVICES.items() for port in s.get("ports", [])]
    assert len(published) >= 5
    assert [p for p in published if not p[1].startswith("127.0.0.1:")] == []


# --- the broker's credentials and ACLs -----------------------------------------------------------------

SERVICE_USER, SERVICE_PASSWORD = "linli-service", "service-pass-1"


@contextmanager
def production_broker(folder: Path, auth: Path) -> Iterator[int]:
    """Mosquitto with infra/mosquitto/mosquitto.conf, its paths moved into `folder`, on a free port."""

    def config_for(port: int) -> str:
        text = (INFRA / "mosquitto" / "mosquitto.conf").read_text()
        for old, new in (("listener 1883", f"listener {port} 127.0.0.1"),
                         ("/mosquitto/auth/", f"{auth}/"), ("/mosquitto/data/", f"{folder}/data/")):
            assert old in text, old
            text = text.replace(old, new)
        if os.geteuid() == 0:
            # As root, Mosquitto switches to its own user, which cannot enter pytest's private tmp dirs (the
            # container copies the files to a folder that user owns instead); the ACL logic is the same.
            text += "\nuser root\n"
        return text

    (folder / "data").mkdir(exist_ok=True)
    with run_broker(folder, config_for) as broker:
        yield broker.port


class Client:
    """A paho MQTT 5 client that records CONNACK, SUBACKs and messages."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.connack = threading.Event()
        self.reason: Any = None
        self.granted: dict[int, list[Any]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, mid, codes, _p: self.granted.__setitem__(mid, codes)
        self.client.on_message = lambda _c, _u, msg: self.messages.append((msg.topic, msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connack.wait(10), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.reason = reason
        self.connack.set()

    def subscribe(self, name: str) -> bool:
        """Subscribe at QoS 1; whether the broker granted it."""
        _, mid = self.client.subscribe(name, qos=1)
        _wait(lambda: mid in self.granted, "SUBACK")
        return not self.granted[mid][0].is_failure

    def publish(self, name: str, body: dict[str, Any]) -> None:
        """Publish at QoS 1 and wait for the PUBACK (Mosquitto acks a denied publish too, and drops it)."""
        self.client.publish(name, json.dumps(body), qos=1).wait_for_publish(10)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def _wait(check: Any, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _healthcheck(service: str, replace: dict[str, str], password: str = SERVICE_PASSWORD
                 ) -> subprocess.CompletedProcess[str]:
    """Run a service's compose healthcheck here, with the service user's credentials in its environment."""
    kind, *command = SERVICES[service]["healthcheck"]["test"]
    command = [part.replace("$$", "$") for part in command]  # compose's escape for a literal $
    for old, new in replace.items():
        command = [part.replace(old, new) for part in command]
    if command[0] == "python":
        command[0] = sys.executable
    env = {**os.environ, "LINLI_MQTT__USERNAME": SERVICE_USER, "LINLI_MQTT__PASSWORD": password}
    args: Any = command[0] if kind == "CMD-SHELL" else command
    return subprocess.run(args, shell=kind == "CMD-SHELL", env=env, capture_output=True, text=True, timeout=30)


def _generate(out: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Any:
    monkeypatch.setenv("LINLI_MQTT__USERNAME", SERVICE_USER)
    monkeypatch.setenv("LINLI_MQTT__PASSWORD", SERVICE_PASSWORD)
    get_settings.cache_clear()
    return CliRunner().invoke(app, ["infra", "mosquitto", "--out", str(out), *extra])


def _handoff(out: Path) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for path in sorted(out.glob("credentials-*.csv")):
        rows.update({row["username"]: row for row in csv.DictReader(path.open())})
    return rows


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
def test_devices_publish_only_their_own_topics_on_a_real_mosquitto(
        settings: Settings, session: Session, engine: Engine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from linli.devices.service import start_ingest

    devices(session, ("GAS-1", "gas"), ("SMOKE-1", "smoke"))
    out = tmp_path / "auth"
    result = _generate(out, monkeypatch)
    assert result.exit_code == 0, result.output
    creds = _handoff(out)
    assert set(creds) == {"GAS-1", "SMOKE-1"}
    gas, smoke = creds["GAS-1"], creds["SMOKE-1"]
    assert gas["command_topic"] == topic("XFL", "gas", "GAS-1", Kind.cmd)
    assert (out / "passwd").stat().st_mode & 0o777 == 0o600
    assert all(cred["password"] not in (out / "passwd").read_text() for cred in creds.values())

    with production_broker(tmp_path, out) as port:
        # Ingest logs in as the service user from the settings, on its shared subscription.
        ingest_settings = get_settings().model_copy(update={"mqtt": get_settings().mqtt.model_copy(
            update={"port": port})})
        status_port = free_port()
        replica = start_ingest(ingest_settings, client_id="infra-ingest", engine=engine, bus=RecordingBus(),
                               status_port=status_port, rules=RuleBook())
        watcher = Client(port, SERVICE_USER, SERVICE_PASSWORD)
        device = Client(port, "GAS-1", gas["password"])
        try:
            assert not watcher.reason.is_failure and not device.reason.is_failure
            assert watcher.subscribe(subscription("watch"))  # reads every device's uplinks (another group)
            own = topic("XFL", "gas", "GAS-1", Kind.telemetry)
            device.publish(own, {"id": "m1", "ts": time.time(), "metrics": {"gas_lel": 2.0}})
            # Another device's topic: acknowledged by the broker, delivered to nobody.
            forged = topic("XFL", "smoke", "SMOKE-1", Kind.event)
            device.publish(forged, {"ts": time.time(), "event": "smoke_alarm"})
            device.publish(own, {"id": "m2", "ts": time.time(), "metrics": {"gas_lel": 2.5}})
            _wait(lambda: len(watcher.messages) >= 2, "the device's telemetry")
            time.sleep(0.3)  # the forged message was published before m2: had it passed, it would be here
            assert [name for name, _ in watcher.messages] == [own, own]
            _wait(lambda: replica.service.counters.written >= 2, "ingest to write the telemetry")
            assert session.execute(select(func.count()).select_from(Telemetry)).scalar_one() == 2
            assert replica.service.counters.dead_lettered == 0

            # A device receives its own commands only (Mosquitto may grant the SUBSCRIBE; it checks `read`
            # on every message it would deliver); the service user may send them.
            device.subscribe(smoke["command_topic"])
            device.subscribe(subscription())
            assert device.subscribe(gas["command_topic"])
            watcher.publish(smoke["command_topic"], {"cmd_id": "c0", "command": "read", "args": {}})
            watcher.publish(gas["command_topic"], {"cmd_id": "c1", "command": "read", "args": {}})
            _wait(lambda: any(name == gas["command_topic"] for name, _ in device.messages), "the command")
            time.sleep(0.3)
            # (twice: its own cmd matches two of its subscriptions, and Mosquitto delivers one copy per match)
            assert {(name, json.loads(p)["cmd_id"]) for name, p in device.messages} == {(gas["command_topic"], "c1")}
            assert not any(name == own for name, _ in device.messages)  # nor other uplinks (its own m1, m2)
            # … and a device may not send commands (the broker routes a publish before it acknowledges it).
            smoke_device = Client(port, "SMOKE-1", smoke["password"])
            try:
                assert smoke_device.subscribe(smoke["command_topic"])
                device.publish(smoke["command_topic"], {"cmd_id": "x", "command": "reset", "args": {}})
                watcher.publish(smoke["command_topic"], {"cmd_id": "c2", "command": "read", "args": {}})
                _wait(lambda: len(smoke_device.messages) >= 1, "the service's command")
                assert [json.loads(p)["cmd_id"] for _, p in smoke_device.messages] == ["c2"]  # not the device's
            finally:
                smoke_device.close()
            # The compose healthchecks of ingest and Mosquitto, run as written (ports moved).
            assert _healthcheck("ingest-1", {"9100": str(status_port)}).returncode == 0
            assert _healthcheck("mosquitto", {"-p 1883": f"-p {port}"}).returncode == 0
            assert _healthcheck("mosquitto", {"-p 1883": f"-p {port}"}, password="wrong").returncode != 0
        finally:
            device.close()
            watcher.close()
            replica.stop()

        # The simulator's publisher logs in the same way, and says when the broker refuses it.
        from linli.devices.simulator import publisher

        good = publisher("127.0.0.1", port, username="GAS-1", password=gas["password"])
        good.disconnect()
        good.loop_stop()
        with pytest.raises(ConnectionError, match="refused"):
            publisher("127.0.0.1", port, username="GAS-1", password="wrong")
        # Wrong passwords and anonymous clients are refused.
        for user, password in (("GAS-1", smoke["password"]), ("GAS-1", ""), (SERVICE_USER, "nope"),
                               ("NO-SUCH", "x")):
            refused = Client(port, user, password)
            try:
                assert refused.reason.is_failure, (user, str(refused.reason))
            finally:
                refused.close()


def test_a_rerun_keeps_passwords_issues_new_ones_and_drops_removed_devices(tmp_path: Path) -> None:
    a, b, c = (BrokerDevice(code, "XFL", "gas") for code in ("A", "B", "C"))
    first = write_broker_auth(tmp_path, [a, b], service_user="svc", service_password="p1")
    assert sorted(first.issued) == ["A", "B"] and first.handoff is not None
    passwords = {row["username"]: row["password"] for row in csv.DictReader(first.handoff.open())}
    assert first.handoff.stat().st_mode & 0o777 == 0o600
    first.handoff.unlink()  # the installer hands it on and deletes it

    later = write_broker_auth(tmp_path, [b, c], service_user="svc", service_password="p2")
    hashes = read_passwd(tmp_path / "passwd")
    assert later.issued == ["C"] and later.kept == 1 and later.removed == ["A"]
    assert set(hashes) == {"svc", "B", "C"}
    assert verify_password(passwords["B"], hashes["B"])  # B's password still works
    assert verify_password("p2", hashes["svc"]) and not verify_password("p1", hashes["svc"])
    assert "user A\n" not in (tmp_path / "acl").read_text()
    assert later.handoff is not None and [r["username"] for r in csv.DictReader(later.handoff.open())] == ["C"]

    moment = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    rotated = write_broker_auth(tmp_path, [b, c], service_user="svc", service_password="p2",
                                rotate=frozenset({"B"}), now=moment)
    assert rotated.issued == ["B"] and not verify_password(passwords["B"], read_passwd(tmp_path / "passwd")["B"])
    again = write_broker_auth(tmp_path, [b, c], service_user="svc", service_password="p2",
                              rotate=frozenset({"C"}), now=moment)  # the same second: a second file
    assert rotated.handoff is not None and again.handoff is not None and again.handoff != rotated.handoff
    assert [r["username"] for r in csv.DictReader(rotated.handoff.open())] == ["B"]


def test_the_hash_is_the_one_mosquitto_passwd_writes() -> None:
    salt = bytes(range(12))
    hashed = hash_password("secret", salt=salt)
    assert hashed.startswith("$7$101$AAECAwQFBgcICQoL$") and verify_password("secret", hashed)
    assert not verify_password("Secret", hashed)


def test_bad_input_writes_nothing(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = BrokerDevice("GW:1", "XFL", "gas")
    with pytest.raises(ValidationError, match="':'"):
        write_broker_auth(tmp_path / "a", [odd], service_user="svc", service_password="p")
    with pytest.raises(ConfigurationError, match="LINLI_MQTT__USERNAME"):
        write_broker_auth(tmp_path / "a", [], service_user="", service_password="p")
    with pytest.raises(ValidationError, match="unknown"):
        write_broker_auth(tmp_path / "a", [], service_user="svc", service_password="p", rotate=frozenset({"X"}))
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / broker_auth.PASSWD_FILE).write_text("garbage line\n")
    with pytest.raises(ConfigurationError, match="not a Mosquitto password line"):
        write_broker_auth(tmp_path / "b", [], service_user="svc", service_password="p")
    assert not (tmp_path / "b" / broker_auth.ACL_FILE).exists()

    monkeypatch.setenv("LINLI_ENV", "prod")
    monkeypatch.setenv("LINLI_MQTT__USERNAME", "svc")
    monkeypatch.setenv("LINLI_MQTT__PASSWORD", "changeme")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["infra", "mosquitto", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "LINLI_MQTT__PASSWORD" in result.output
    assert not (tmp_path / "c").exists()


# --- the process work pool ---------------------------------------------------------------------------


@pytest.mark.slow
def test_infra_deploy_puts_every_dag_on_a_process_pool_whose_worker_runs_them(
        prefect_server: None, dags: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`linli infra deploy` (the compose `deploy` service), then `prefect worker … --type process` (`worker`)."""
    import asyncio
    import textwrap

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    monkeypatch.setenv("LINLI_PREFECT__API_URL", api_url)
    (dags / "pool-check.yaml").write_text(textwrap.dedent("""
        name: pool-check
        steps:
          note: {task: testing.record, with: {label: "ran on the pool"}}
        """), encoding="utf-8")
    get_settings.cache_clear()
    for attempt in range(2):  # the second run finds the pool and updates the deployment in place
        result = CliRunner().invoke(app, ["infra", "deploy", "--pool", "linli-test"])
        assert result.exit_code == 0, result.output
        assert ("已创建" if attempt == 0 else "已存在") in result.output and "pool-check" in result.output

    async def pool_and_deployment() -> tuple[Any, Any]:
        async with get_client() as client:
            return (await client.read_work_pool("linli-test"),
                    await client.read_deployment_by_name("dag/pool-check"))

    pool, deployment = asyncio.run(pool_and_deployment())
    assert pool.type == "process" and deployment.work_pool_name == "linli-test"
    assert deployment.entrypoint == "flows/dag_runner.py:run_dag"  # relative to the image's /app, which …
    assert deployment.job_variables == {"working_dir": str(Path.cwd())}  # … each run starts in

    run: Any = run_deployment("dag/pool-check", timeout=0)  # sync here: returns the Scheduled run
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "linli-test", "--type", "process",
         "--run-once"], env={**os.environ, "PREFECT_API_URL": api_url}, cwd=Path(__file__).resolve().parents[1],
        capture_output=True, text=True, timeout=300)

    async def final_state() -> Any:
        async with get_client() as client:
            return (await client.read_flow_run(run.id)).state

    state = asyncio.run(final_state())
    assert state is not None and state.is_completed(), (state, worker.stdout[-3000:], worker.stderr[-3000:])
