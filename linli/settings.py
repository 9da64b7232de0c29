"""Linli's settings: one pydantic-settings root, read once, env prefix ``LINLI_`` (nested with ``__``)."""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER_SECRETS = {"", "changeme", "minioadmin", "linli-dev-secret"}


class Language(StrEnum):
    """The languages Linli speaks; zh-CN first."""

    zh = "zh"
    en = "en"


class DatabaseSettings(BaseModel):
    """Linli's own database (cases, people, places, notifications)."""

    url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty: a SQLite file under LINLI_DATA_DIR. "
        "Production: postgresql+psycopg://user:pass@host:5432/linli",
    )
    echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")


class MqttSettings(BaseModel):
    """The MQTT broker devices publish to."""

    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")
    username: str = Field(default="", description="Broker user, empty for none.")
    password: SecretStr = Field(default=SecretStr(""), description="Broker password.")


class StorageSettings(BaseModel):
    """Object storage for photos and snapshots: a local folder or MinIO / any S3."""

    backend: Literal["local", "minio"] = Field(default="local", description="'local' folder or 'minio'.")
    endpoint: str = Field(default="127.0.0.1:9000", description="MinIO/S3 endpoint host:port.")
    access_key: str = Field(default="minioadmin", description="MinIO/S3 access key.")
    secret_key: SecretStr = Field(default=SecretStr("minioadmin"), description="MinIO/S3 secret key.")
    bucket: str = Field(default="linli", description="Bucket that holds Linli's objects.")
    secure: bool = Field(default=False, description="Use HTTPS to reach the endpoint.")
    max_photo_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Largest photo accepted.")


class NotifySettings(BaseModel):
    """Where notifications go, in addition to being recorded in the database."""

    urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Apprise URLs every notification is also sent to "
        "(e.g. json://127.0.0.1:8765/linli, wxteams://..., dingtalk://..., mailto://...).",
    )
    timeout_seconds: float = Field(default=10, gt=0, description="Give up on one delivery after this long.")

    @field_validator("urls", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class PrefectSettings(BaseModel):
    """How Linli reaches Prefect (the demo starts its own server)."""

    api_url: str = Field(default="", description="Prefect API URL; empty: the demo's own server.")
    port: int = Field(default=4200, ge=1, le=65535, description="Port of the demo's Prefect server.")
    database_url: str = Field(
        default="",
        description="Database of the demo's Prefect server; empty: SQLite under LINLI_DATA_DIR/prefect.",
    )
    runner: Literal["inprocess", "process"] = Field(
        default="inprocess",
        description="How `linli serve` runs the deployments' flow runs: 'inprocess' on one warm event loop "
        "(flows/worker.py, ~0.2 s a run), or 'process' through Prefect's serve() (a new Python process a run).",
    )
    worker_limit: int = Field(default=8, ge=1, le=256, description="Flow runs one in-process worker runs at once.")
    worker_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often the in-process worker asks Prefect for due runs.")
    worker_grace_seconds: float = Field(
        default=10.0, ge=0, description="On shutdown, how long running flow runs may take to finish before they "
        "are stopped and marked Crashed.")


class DashboardSettings(BaseModel):
    """The Streamlit dashboard."""

    port: int = Field(default=8501, ge=1, le=65535, description="Dashboard port (binds 127.0.0.1).")


class LoopSettings(BaseModel):
    """Defaults of the closed loop until a governance-policy block overrides them."""

    good_rating: int = Field(default=3, ge=1, le=5, description="Ratings at or above this close a case.")
    auto_close_days: float = Field(
        default=7, gt=0, description="A resolved case nobody rates is closed as satisfied after this long."
    )
    stuck_minutes: float = Field(
        default=2, gt=0, description="An automated stage idle this long is started again by the SLA watch."
    )
    sla_interval_seconds: int = Field(default=60, ge=5, description="How often the SLA watch runs.")


class DagSettings(BaseModel):
    """The low-code DAGs: where shipped definitions live and which modules register tasks."""

    definitions_dir: Path = Field(
        default=REPO_ROOT / "flows" / "dags", description="Folder of the shipped DAG definitions (*.yaml).")
    task_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["tasks.cases", "tasks.messages", "tasks.community", "tasks.devices",
                                 "tasks.datahub", "tasks.people", "tasks.telemetry"],
        description="Comma-separated Python modules whose tasks DAG steps can use (they register on import).",
    )

    @field_validator("task_modules", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
class GovernanceSettings(BaseModel):
    """Where the governance policy lives (a Prefect block admins edit) and the intake API."""

    policy_block: str = Field(
        default="default",
        description="Name of the governance-policy block the loop reads at every run; "
        "while none is saved, the seeds' categories and the loop defaults apply.",
    )
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port of `linli api` (binds 127.0.0.1).")
    photo_url_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600,
                                   description="How long a presigned photo URL given to staff stays valid.")


class DevicesSettings(BaseModel):
    """Devices: the ingest service, alarms' fast path, polling and downlink commands."""

    shared_group: str = Field(default="linli-ingest", description="MQTT 5 shared-subscription group of the "
                              "ingest replicas ($share/<group>/…); empty: a plain subscription.")
    batch_size: int = Field(default=2000, ge=1, le=50000, description="Most messages written per transaction.")
    batch_wait_seconds: float = Field(default=0.05, ge=0, le=5, description="How long a batch waits to fill up.")
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024, description="Larger payloads are dead-lettered.")
    status_port: int = Field(default=0, ge=0, le=65535, description="Serve ingest counters as JSON on "
                             "127.0.0.1:<port>; 0: off.")
    alarm_rules_block: str = Field(default="default", description="Name of the alarm-rules block ingest reads "
                                   "(defaults from the registry when it does not exist).")
    rules_refresh_seconds: float = Field(default=60, ge=5, description="How often ingest re-reads the rules block.")
    command_timeout_seconds: float = Field(default=30, gt=0, description="A command without cmd_ack after this "
                                           "long is marked timed out.")
    low_battery_percent: int = Field(default=20, ge=1, le=100, description="Battery at or below this is low.")
    offline_factor: float = Field(default=2, ge=1, description="Silent for this many heartbeat intervals: offline.")


class DatahubSettings(BaseModel):
    """Pushes of access and vehicle records (and alarms) to the city data hub.

    Batch size, attempts, backoff and timeout are each endpoint's own (the data-hub endpoint block)."""

    demo_receiver_port: int = Field(default=8766, ge=1, le=65535, description="Port of the demo's local "
                                    "data-hub receiver (127.0.0.1).")
    signal_seconds: float = Field(default=5, ge=0, le=3600, description="Ingest emits the Prefect event "
                                  "linli.datahub.pending at most this often while it writes access/vehicle records "
                                  "(the datahub-push DAG's trigger); 0: off, the DAG's schedule only.")


class PeopleSettings(BaseModel):
    """The registry's safeguards: retention periods, the care watch, access credentials, logins."""

    closed_case_retention_days: int = Field(
        default=365, ge=1, description="Closed cases older than this lose their reporter's personal data.")
    telemetry_retention_days: int = Field(default=90, ge=1, description="Device telemetry older than this is deleted.")
    access_retention_days: int = Field(
        default=180, ge=1, description="Access and vehicle records older than this are deleted.")
    patrol_retention_days: int = Field(default=365, ge=1, description="Patrol scans older than this are deleted.")
    audit_retention_days: int = Field(default=3 * 365, ge=30, description="Audit lines older than this are deleted.")
    care_watch_hours: int = Field(
        default=24, ge=1, description="Default silence (hours) before a welfare check for a resident living alone.")
    face_unused_days: int = Field(
        default=15, ge=1, description="Face credentials unused this long are voided; the resident re-enrols.")
    face_failures: int = Field(
        default=3, ge=2, description="Face failures at a gate within `face_failure_minutes` that trigger a notice.")
    face_failure_minutes: int = Field(default=5, ge=1, description="The window for counting face failures.")
    session_hours: int = Field(default=12, ge=1, description="How long a dashboard login lasts.")
    voice_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated Apprise URLs of a voice/SMS service: welfare checks also "
        "ring the grid worker through them (residents without smartphones get a voice URL as contact_url).")

    @field_validator("voice_urls", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class OpsSettings(BaseModel):
    """Running the production topology here (`linli up`, `linli status`): log format, process names, ports."""

    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines of ingest, the API, the workers and `linli up`: 'text', or 'json' "
        "(one object a line: time, level, logger, message, process, extra fields) for a log shipper.")
    process_name: str = Field(default="", description="Name of this process in JSON log lines (`linli up` sets "
                              "it for each child, e.g. ingest-2); empty: the service's own name.")
    ingest_metrics_port: int = Field(
        default=9470, ge=0, le=65535, description="`linli up`: the first ingest replica serves /metrics and its "
        "counters on 127.0.0.1:<port>, the next one on <port>+1, …; 0: free ports chosen at start.")
    restart_backoff_seconds: float = Field(
        default=1.0, gt=0, le=60, description="`linli up`: wait before restarting a process that died; doubles "
        "while it keeps dying quickly, up to restart_backoff_max_seconds.")
    restart_backoff_max_seconds: float = Field(default=60.0, gt=0, le=3600,
                                               description="`linli up`: longest wait before a restart.")
    crash_loop_restarts: int = Field(
        default=5, ge=1, le=100, description="`linli up`: a process that died this many times in a row within "
        "min_uptime_seconds of starting is reported down (crash loop) and retried only at the longest wait.")
    min_uptime_seconds: float = Field(default=10.0, gt=0, description="`linli up`: a process that ran at least "
                                      "this long before dying is restarted after the first wait again.")
    stop_grace_seconds: float = Field(default=15.0, ge=0, le=600, description="`linli up`: on stop, how long "
                                      "children have after SIGTERM before they get SIGKILL.")


class TelemetrySettings(BaseModel):
    """Telemetry at scale: monthly partitions (PostgreSQL), hourly aggregates and how long they are kept.

    Raw telemetry's own period stays LINLI_PEOPLE__TELEMETRY_RETENTION_DAYS (a privacy setting)."""

    rollup_retention_days: int = Field(default=3 * 365, ge=1, description="Hourly telemetry aggregates older "
                                       "than this are deleted (raw rows go after people.telemetry_retention_days).")
    partitions_ahead_months: int = Field(default=3, ge=1, le=24, description="PostgreSQL: monthly partitions "
                                         "made this many months ahead (a DEFAULT partition catches the rest).")
    rollup_lookback_hours: int = Field(default=2, ge=0, le=48, description="Closed hours aggregated again at "
                                       "each rollup, for messages that arrive late.")
    rollup_max_hours: int = Field(default=24 * 7, ge=1, description="Most hours one rollup run catches up on.")


class Settings(BaseSettings):
    """Every Linli setting. Environment: LINLI_<GROUP>__<FIELD>, e.g. LINLI_DATABASE__URL."""

    model_config = SettingsConfigDict(
        env_prefix="LINLI_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    env: Literal["dev", "prod"] = Field(default="dev", description="'prod' refuses placeholder secrets.")
    language: Language = Field(default=Language.zh, description="Default language: zh (简体中文) or en.")
    data_dir: Path = Field(default=Path(".linli"), description="Where the embedded default keeps its files.")
    templates_dir: Path = Field(
        default=REPO_ROOT / "templates", description="Jinja2 templates (notifications, reports)."
    )
    timezone: str = Field(default="Asia/Shanghai", description="Local time zone for 'today' in KPIs.")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    dag: DagSettings = Field(default_factory=DagSettings)
    people: PeopleSettings = Field(default_factory=PeopleSettings)
    governance: GovernanceSettings = Field(default_factory=GovernanceSettings)
    devices: DevicesSettings = Field(default_factory=DevicesSettings)
    datahub: DatahubSettings = Field(default_factory=DatahubSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_prod(self) -> Settings:
        if self.env == "prod" and self.storage.backend == "minio":
            if self.storage.secret_key.get_secret_value() in PLACEHOLDER_SECRETS:
                raise ValueError("LINLI_STORAGE__SECRET_KEY is a placeholder; set a real secret for prod")
        return self

    @property
    def database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'linli.db').resolve()}"

    @property
    def prefect_api_url(self) -> str:
        """The Prefect API this installation talks to."""
        return self.prefect.api_url or f"http://127.0.0.1:{self.prefect.port}/api"


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings()


def prefect_environment(settings: Settings) -> dict[str, str]:
    """Environment for child processes that talk to (or run) the demo's Prefect server, offline."""
    home = (settings.data_dir / "prefect").resolve()
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": settings.prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(settings.prefect.port),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "DO_NOT_TRACK": "1",
        # Schedule a few runs ahead, not 100: fewer writes on the embedded SQLite server.
        "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "5",
    }
    if settings.prefect.database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = settings.prefect.database_url
    return env


def child_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment plus the Prefect one, for subprocesses Linli starts."""
    env = dict(os.environ)
    env.update(prefect_environment(settings))
    env.update(extra)
    return env



def apply_prefect_environment(settings: Settings) -> None:
    """Point this process's Prefect client at the configured API, offline (the CLI calls this first)."""
    env = prefect_environment(settings)
    os.environ.setdefault("PREFECT_HOME", env["PREFECT_HOME"])
    # Prefect creates its home only if the parent exists; without this a first `linli …` in a new
    # folder warns "Failed to create the Prefect home directory".
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    for key in ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK"):
        os.environ[key] = env[key]
