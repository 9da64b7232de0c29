"""Find or start what the suite needs, and say plainly what it falls back to (run by `make test`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_postgres() -> str:
    """Start this machine's PostgreSQL cluster if it is installed but down."""
    if reachable("127.0.0.1", 5432):
        return "PostgreSQL at 127.0.0.1:5432: tests run on it and on SQLite"
    if shutil.which("pg_ctlcluster") and shutil.which("pg_lsclusters"):
        out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout.split()
        if len(out) >= 2:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", out[0], out[1], "start"],
                           capture_output=True)
            if reachable("127.0.0.1", 5432):
                return "PostgreSQL started at 127.0.0.1:5432: tests run on it and on SQLite"
    return "PostgreSQL not reachable at 127.0.0.1:5432: tests fall back to SQLite only"


def ensure_browser() -> str:
    """Install Debian's chromium and CJK fonts for the dashboard's browser test, when we may."""
    if shutil.which("chromium") and Path("/usr/share/fonts/opentype/noto").exists():
        return "chromium found: the dashboard is also tested in a real browser"
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for args in (["apt-get", "install", "-y", "-q", "chromium", "fonts-noto-cjk"],
                     ["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "chromium", "fonts-noto-cjk"]):
            subprocess.run(args, capture_output=True, env=env, timeout=900)
            if args[1] == "install" and shutil.which("chromium"):
                return "chromium installed: the dashboard is also tested in a real browser"
    return "chromium not available (not root or no apt-get): the browser test is skipped, with this reason"


def ensure_mosquitto() -> str:
    """Install Debian's mosquitto for the device tests when it is missing and we may (root, apt-get)."""
    from tests.mqtt_broker import mosquitto_path

    if mosquitto_path():
        return f"mosquitto found ({mosquitto_path()}): device tests start their own broker on a free port"
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for args in (["apt-get", "install", "-y", "-q", "mosquitto"], ["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "mosquitto"]):
            subprocess.run(args, capture_output=True, env=env, timeout=900)
            if args[1] == "install" and mosquitto_path():
                return "mosquitto installed: device tests start their own broker on a free port"
    return "mosquitto not available (not root or no apt-get): the MQTT device tests are skipped, with this reason"


def main() -> int:
    """Print one line per service the suite uses."""
    print(f"[linli test services] {ensure_postgres()}")
    print(f"[linli test services] {ensure_browser()}")
    print(f"[linli test services] {ensure_mosquitto()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
