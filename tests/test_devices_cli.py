"""`linli devices import` (all rows or none, each bad row named) and `linli simulate` on a real broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from typer.testing import CliRunner

from linli.cli import app
from linli.devices.ingest import IngestOptions, IngestService
from linli.devices.writer import BatchWriter
from linli.models import Device, DeviceState, Telemetry
from linli.settings import Settings
from tests.factories import seeded
from tests.mqtt_broker import mosquitto_path, run_broker

runner = CliRunner()
GOOD = """code,device_type,building,floor,name,heartbeat_seconds,firmware
XFL-B1-GAS-01,gas,XFL-B1,3,3楼燃气,120,1.0.2
XFL-B1-SOS-01,sos_button,XFL-B1,1,,,
HPY-GATE-01,access_gate,HPY-B2,,东门门禁,,
"""
BAD = """code,device_type,building,floor
OK-1,gas,XFL-B1,2
BAD 2,gas,XFL-B1,2
OK-3,toaster,XFL-B1,2
OK-4,smoke,NOWHERE,2
OK-1,smoke,XFL-B1,1
"""


def test_import_registers_every_row(settings: Settings, session: Session, tmp_path: Path) -> None:
    seeded(session)
    path = tmp_path / "devices.csv"
    path.write_text(GOOD, encoding="utf-8")
    result = runner.invoke(app, ["devices", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "3" in result.output
    gas = session.execute(select(Device).where(Device.code == "XFL-B1-GAS-01")).scalar_one()
    assert (gas.floor, gas.heartbeat_seconds, gas.firmware, gas.state) == (3, 120, "1.0.2", DeviceState.offline)
    sos = session.execute(select(Device).where(Device.code == "XFL-B1-SOS-01")).scalar_one()
    assert sos.heartbeat_seconds == 300 and sos.grid_id is not None  # the type's default; grid from the building


def test_a_bad_row_imports_nothing_and_every_bad_row_is_named(settings: Settings, session: Session,
                                                                tmp_path: Path) -> None:
    seeded(session)
    path = tmp_path / "devices.csv"
    path.write_text(BAD, encoding="utf-8")
    result = runner.invoke(app, ["devices", "import", str(path)])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    for expected in ("line 3", "line 4", "toaster", "line 5", "NOWHERE", "line 6", "also on line 2"):
        assert expected in output, expected
    assert "line 2:" not in output
    assert session.execute(select(func.count()).select_from(Device)).scalar_one() == 0


def test_import_refuses_a_header_it_does_not_know(settings: Settings, session: Session, tmp_path: Path) -> None:
    seeded(session)
    path = tmp_path / "devices.csv"
    path.write_text("id,kind\n1,gas\n", encoding="utf-8")
    result = runner.invoke(app, ["devices", "import", str(path)])
    assert result.exit_code == 2
    assert "code" in result.output and "device_type" in result.output


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
def test_simulate_publishes_what_ingest_stores(settings: Settings, session: Session, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, engine: object) -> None:
    from linli.settings import get_settings

    with run_broker(tmp_path) as broker:
        monkeypatch.setenv("LINLI_MQTT__PORT", str(broker.port))
        get_settings.cache_clear()
        seeded(session)
        # the fleet is registered by `simulate` itself; ingest finds new devices by reloading its directory
        service = IngestService(BatchWriter(engine),  # type: ignore[arg-type]
                                IngestOptions(port=broker.port, client_id="sim-test"))
        service.start()
        try:
            result = runner.invoke(app, ["simulate", "--buildings", "2", "--rate", "200", "--duration", "3",
                                         "--alarm-every", "1"])
            assert result.exit_code == 0, result.output
            deadline = time.monotonic() + 20
            while service.counters.received < 500 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)
        finally:
            service.stop()
    types = set(session.execute(select(Device.device_type)).scalars())
    assert len(types) == 15  # every type
    assert session.execute(select(func.count()).select_from(Telemetry)).scalar_one() > 0
    assert service.counters.written > 400
    online = session.execute(select(func.count()).select_from(Device).where(Device.state == "online")).scalar_one()
    assert online > 0
