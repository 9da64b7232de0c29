"""`linli demo` as a user runs it: real Prefect server, served flows, dashboard, simulator — cases close, and
access records reach the local data-hub receiver masked."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from linli.db import make_engine
from linli.models import Case, CaseEvent, CaseStatus, EndpointCursor, Notification
from tests.services import reachable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_demo_runs_the_loop_until_cases_close_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "linli"
    env = {"LINLI_DATA_DIR": str(data), "LINLI_LANGUAGE": "en", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    prefect_port, dashboard_port, hub_port = _free_port(), _free_port(), _free_port()
    env["LINLI_DATAHUB__DEMO_RECEIVER_PORT"] = str(hub_port)  # never the default a demo nearby may hold
    # A broker of its own (the demo starts Mosquitto on a free port): on a shared 1883, other ingests
    # subscribed to the same shared group would take part of the demo's messages.
    env["LINLI_MQTT__PORT"] = str(_free_port())
    cmd = [sys.executable, "-m", "linli.cli", "demo", "--duration", "120", "--prefect-port", str(prefect_port),
           "--dashboard-port", str(dashboard_port), "--report-every", "15"]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Prefect UI" in output and "Dashboard" in output and "Cases by status" in output
    engine = make_engine(f"sqlite:///{data / 'linli.db'}")
    with Session(engine) as session:
        closed = session.exec(select(Case).where(Case.status == CaseStatus.closed)).all()
        assert closed, f"no case closed in 120 s:\n{output}\n" + (data / "logs" / "flows.log").read_text()[-3000:]
        actors = {e.actor for e in session.exec(select(CaseEvent).where(CaseEvent.case_id == closed[0].id)).all()}
        assert {"flow:report", "flow:assess", "flow:dispatch", "flow:evaluate"} <= actors
        kinds = {n.kind for n in session.exec(select(Notification).where(Notification.case_id == closed[0].id)).all()}
        assert {"assignment", "rating_request"} <= kinds
        # access records reach the local receiver through the demo-hub endpoint block and the datahub-push
        # deployment (no push loop of its own any more), with ID numbers masked by the block's policy
        devices_on = "mosquitto is not installed" not in output  # else the demo runs without devices, and says so
        hub = session.exec(select(EndpointCursor).where(EndpointCursor.endpoint == "demo-hub")).first()
        assert not devices_on or (hub is not None and hub.delivered > 0), \
            (data / "logs" / "flows.log").read_text()[-3000:]
    engine.dispose()
    if devices_on:
        received = (data / "logs" / "datahub-receiver.log").read_text(errors="replace")
        assert re.search(r"340\*{13}\w{2}", received), received[-2000:]  # a masked ID number (id_card access)
        assert not re.search(r"3401041990\d{8}", received)  # and never a whole one
    # stopped cleanly: nothing listens any more (the demo's own Mosquitto included)
    for port in (prefect_port, dashboard_port, hub_port, int(env["LINLI_MQTT__PORT"])):
        assert not reachable("127.0.0.1", port), f"something still listens on {port} after the demo stopped"
