"""The device pages through Streamlit's AppTest: devices, alarms (ack and clear), masked records, data hub."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from linli.devices.simulator import publisher
from linli.devices.writer import BatchWriter, Incoming
from linli.models import Alarm, AlarmStatus, DeviceCommand
from linli.models.devices import CommandStatus
from linli.settings import Settings, get_settings
from tests.device_factories import devices, message
from tests.mqtt_broker import mosquitto_path, run_broker

PAGES = Path(__file__).resolve().parents[1] / "dashboards" / "views"


def _populate(engine: Engine, session: Session) -> None:
    devices(session, ("G-1", "gas"), ("A-1", "access_gate"), ("V-1", "vehicle_barrier"), ("S-1", "smoke"))
    BatchWriter(engine).write([
        Incoming(*message("heartbeat", "gas", "G-1", {"battery": 55})),
        Incoming(*message("telemetry", "gas", "G-1", {"metrics": {"gas_lel": 33.0}})),
        Incoming(*message("event", "access_gate", "A-1", {"event": "access", "method": "id_card",
                                                          "credential_ref": "340104199001011234"})),
        Incoming(*message("event", "vehicle_barrier", "V-1", {"event": "vehicle", "plate": "皖A12345"})),
    ])


def test_devices_page_shows_states_and_the_list(settings: Settings, engine: Engine, session: Session) -> None:
    _populate(engine, session)
    at = AppTest.from_file(str(PAGES / "devices.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["在线"] == "3" and shown["离线"] == "1"  # S-1 never spoke
    listed = at.dataframe[1].value
    assert set(listed["编号"]) == {"G-1", "A-1", "V-1", "S-1"}
    assert list(listed.loc[listed["编号"] == "G-1", "电量"]) == ["55%"]


def test_the_building_view_names_each_building_with_its_community(settings: Settings, session: Session) -> None:
    from linli.devices.inventory import DeviceIn, add_device

    devices(session, ("G-1", "gas"))  # XFL-B1: 幸福里社区 1栋
    add_device(session, DeviceIn(code="G-2", device_type="gas", building="HPY-B1", floor=1))  # 和平苑社区 1栋
    session.commit()
    at = AppTest.from_file(str(PAGES / "devices.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    shown = at.dataframe[0].value
    names = list(shown["楼栋"])
    assert len(names) == len(set(names)) == 2, names  # both are "1栋" within their community
    assert all(name.endswith("1栋") and len(name) > 2 for name in names), names


def test_alarms_page_acknowledges_and_clears(settings: Settings, engine: Engine, session: Session) -> None:
    _populate(engine, session)
    alarm = session.execute(select(Alarm)).scalar_one()
    at = AppTest.from_file(str(PAGES / "alarms.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["告警"]) == ["燃气泄漏"]
    at.selectbox(key="alarm").set_value(alarm.id)
    at.text_input(key="alarm_who").set_value("staff:7")
    at.button(key="ack").click().run()
    assert not at.exception, at.exception
    session.refresh(alarm)
    assert (alarm.status, alarm.acknowledged_by) == (AlarmStatus.acknowledged, "staff:7")
    at.button(key="clear").click().run()
    session.refresh(alarm)
    assert alarm.status == AlarmStatus.cleared and alarm.cleared_by == "staff:7"


def test_records_page_masks_id_numbers_and_plates(settings: Settings, engine: Engine, session: Session) -> None:
    _populate(engine, session)
    at = AppTest.from_file(str(PAGES / "records.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    access, vehicles = at.dataframe[0].value, at.dataframe[1].value
    assert list(access["凭证"]) == ["340*************34"]
    assert list(vehicles["车牌"]) == ["皖A***45"]
    assert "340104199001011234" not in access.to_csv() and "皖A12345" not in vehicles.to_csv()


def test_datahub_page_says_nothing_was_pushed_yet(settings: Settings) -> None:
    at = AppTest.from_file(str(PAGES / "datahub.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    assert any("还没有推送过" in info.value for info in at.info)


def test_a_command_from_the_devices_page_is_published_and_times_out_unanswered(
        settings: Settings, engine: Engine, session: Session, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed")
    devices(session, ("L-1", "loudspeaker"))
    with run_broker(tmp_path) as broker:
        monkeypatch.setenv("LINLI_MQTT__PORT", str(broker.port))
        monkeypatch.setenv("LINLI_DEVICES__COMMAND_TIMEOUT_SECONDS", "1")
        get_settings.cache_clear()
        heard: list[bytes] = []
        listener = publisher(broker.host, broker.port)
        listener.on_message = lambda _c, _u, msg: heard.append(msg.payload)
        listener.subscribe("linli/XFL/loudspeaker/L-1/cmd", qos=1)
        time.sleep(0.3)
        at = AppTest.from_file(str(PAGES / "devices.py"), default_timeout=30).run()
        at.selectbox(key="cmd_device").set_value("L-1")
        at.selectbox(key="cmd_command").set_value("broadcast")
        at.text_input(key="cmd_text").set_value("请注意防汛")
        at.text_input(key="cmd_who").set_value("staff:2")
        at.button[0].click().run()
        assert not at.exception, at.exception
        time.sleep(0.3)
        listener.disconnect()
        listener.loop_stop()
    assert any("超时未应答" in s.value for s in at.success)
    assert heard and json.loads(heard[0])["args"] == {"text": "请注意防汛"}
    row = session.execute(select(DeviceCommand)).scalar_one()
    assert (row.status, row.requested_by) == (CommandStatus.timeout, "staff:2")
    get_settings.cache_clear()
