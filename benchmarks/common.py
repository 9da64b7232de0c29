"""What the benchmarks share: a fresh database (PostgreSQL when it answers, else SQLite), a broker, a fleet."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from linli import db
from linli.devices.simulator import SimDevice, equip
from tests.services import reachable

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def fresh_database(kind: str = "auto") -> Iterator[str]:
    """A migrated, empty database: 'postgresql', 'sqlite' or 'auto' (PostgreSQL when it answers); dropped after."""
    use_pg = kind == "postgresql" or (kind == "auto" and reachable("127.0.0.1", 5432))
    if not use_pg:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            db.upgrade(url)
            yield url
            db.engine_for(url).dispose()
        return
    name = f"linli_bench_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        db.upgrade(url)
        yield url
    finally:
        db.engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fleet(url: str, *, buildings: int = 4, per_type: int = 1) -> list[SimDevice]:
    """The sample community with devices of every type, registered in the database at `url`."""
    with db.session_scope(db.engine_for(url)) as session:
        return equip(session, buildings=buildings, per_type=per_type)


def last_line(figures: dict[str, Any]) -> None:
    """Print the figures as the one JSON object on the last line."""
    print(json.dumps(figures, ensure_ascii=False))


def wait_http(url: str, timeout: float) -> None:
    """Until `url` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
