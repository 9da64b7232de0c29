"""Find or start what the suite needs, and say plainly what it falls back to (run by `make test`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys


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


def main() -> int:
    """Print one line per service the suite uses."""
    print(f"[linli test services] {ensure_postgres()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
