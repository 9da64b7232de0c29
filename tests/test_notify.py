"""Notifications on real parts: templates rendered from disk, rows in the database, Apprise
sending to a real HTTP receiver on this machine."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from linli.errors import ConfigurationError, DeliveryError, ValidationError
from linli.models import (
    Building,
    Case,
    CaseStatus,
    Category,
    Community,
    Notification,
    NotificationStatus,
    Resident,
    Staff,
    StaffRole,
)
from linli.notify import (
    KINDS,
    AppriseNotifier,
    RecordingNotifier,
    case_context,
    deliver,
    pending_ids,
    queue,
    queue_for_case,
    recipient_context,
    targets_urls,
    template_for,
)
from linli.privacy import mask_name
from linli.seed import seed_sample
from linli.settings import Language, Settings
from linli.templating import render, template_env
from tests.receivers import NotificationReceiver

DESCRIPTION = "3栋楼下的秋千坏了，链条断了一根，小孩玩很危险"
# 04:30 UTC is 12:30 in Asia/Shanghai.
DUE_AT = datetime(2024, 5, 1, 4, 30, tzinfo=UTC)

# Who gets each kind of notification.
RECIPIENT = {
    "receipt": "reporter",
    "assignment": "assignee",
    "rating_request": "reporter",
    "sla_warning": "assignee",
    "escalation": "lead",
    "reopened": "assignee",
    "closed": "reporter",
    "offer": "assignee",
    "referral": "lead",
    "merged": "reporter",
    "rejected": "reporter",
}
EXTRA: dict[str, dict[str, Any]] = {
    "reopened": {"comment": "链条换了但座椅还是松的", "rating": 2},
    "closed": {"rating": 5},
    "offer": {"window_minutes": 30},
    "referral": {"agency": "法律援助中心"},
    "merged": {"original": "LL-TEST-0000"},
    "rejected": {"reason": "不属于社区事务"},
}


@dataclass
class Sample:
    """A seeded street office with one dispatched case in it."""

    case: Case
    reporter: Resident
    assignee: Staff
    lead: Staff
    other: Staff

    def target(self, who: str) -> str:
        """'reporter' / 'assignee' / 'lead' / 'other' as a notification target string."""
        person = getattr(self, who)
        return f"{'resident' if who == 'reporter' else 'staff'}:{person.id}"


@pytest.fixture
def sample(session: Session) -> Sample:
    """Seed the sample street office and open case LL-TEST-0001 in 幸福里社区."""
    seed_sample(session)
    session.commit()
    community = session.exec(select(Community).where(Community.code == "XFL")).one()
    category = session.exec(select(Category).where(Category.code == "facility_repair")).one()
    building = session.exec(select(Building).where(Building.code == "XFL-B1")).one()
    reporter = session.exec(select(Resident).where(Resident.building_id == building.id)).first()
    staff = session.exec(
        select(Staff).where(Staff.community_id == community.id, Staff.team == "property").order_by(col(Staff.id))
    ).all()
    lead = next(s for s in staff if s.role == StaffRole.team_lead)
    handlers = [s for s in staff if s.role == StaffRole.property_handler]
    assert reporter is not None and len(handlers) == 2
    assert community.id is not None and category.id is not None
    case = Case(
        number="LL-TEST-0001",
        community_id=community.id,
        building_id=building.id,
        grid_id=building.grid_id,
        category_id=category.id,
        description=DESCRIPTION,
        status=CaseStatus.dispatched,
        priority=1,
        reporter_id=reporter.id,
        reporter_name=reporter.name,
        assignee_id=handlers[0].id,
        due_at=DUE_AT,
    )
    session.add(case)
    session.commit()
    return Sample(case=case, reporter=reporter, assignee=handlers[0], lead=lead, other=handlers[1])


def _queue(session: Session, settings: Settings, sample: Sample, kind: str, who: str,
           language: Language = Language.zh) -> Notification:
    return queue_for_case(
        session,
        case=sample.case,
        kind=kind,
        target=sample.target(who),
        language=language,
        templates_dir=settings.templates_dir,
        extra=EXTRA.get(kind, {}),
        timezone=settings.timezone,
    )


def _ids(*rows: Notification) -> list[int]:
    """The ids of flushed rows."""
    ids = [row.id for row in rows]
    assert None not in ids
    return [i for i in ids if i is not None]


def _reread(engine: Engine, notification_id: int | None) -> Notification:
    """The row as another connection sees it (what was committed, not what this session holds)."""
    with Session(engine) as fresh:
        row = fresh.get(Notification, notification_id)
        assert row is not None
        return row


# --- templates -----------------------------------------------------------------------------


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_in_both_languages(
    session: Session, settings: Settings, sample: Sample, kind: str, language: Language
) -> None:
    notification = _queue(session, settings, sample, kind, RECIPIENT[kind], language)

    assert notification.id is not None
    assert notification.status == NotificationStatus.pending
    assert notification.template == f"notifications/{kind}.{language.value}.md.j2"
    assert notification.language == language.value
    assert notification.case_id == sample.case.id
    assert "LL-TEST-0001" in notification.title
    assert not notification.title.startswith("#")
    assert notification.body and "{{" not in notification.body and "{%" not in notification.body
    if language is Language.zh:
        assert "【邻里】" in notification.title and "您好" in notification.body
    else:
        assert "[Linli]" in notification.title and "Hello" in notification.body
    # A resident's full name never appears in a notification; the masked one may.
    assert sample.reporter.name not in notification.title + notification.body


def test_templates_carry_what_each_kind_needs(session: Session, settings: Settings, sample: Sample) -> None:
    assignment = _queue(session, settings, sample, "assignment", "assignee")
    assert "设施报修" in assignment.title and "紧急" in assignment.title
    for expected in (DESCRIPTION, "幸福里社区 1栋", "2024-05-01 12:30", mask_name(sample.reporter.name), "接单"):
        assert expected in assignment.body
    assert assignment.body.startswith(f"{sample.assignee.name}，您好")

    receipt = _queue(session, settings, sample, "receipt", "reporter")
    assert receipt.body.startswith(f"{mask_name(sample.reporter.name)}，您好")

    reopened = _queue(session, settings, sample, "reopened", "assignee", Language.en)
    assert "链条换了但座椅还是松的" in reopened.body and "rated 2 of 5" in reopened.body

    rating = _queue(session, settings, sample, "rating_request", "reporter")
    assert "1 到 5 分" in rating.body

    sample.case.escalation_level = 1
    escalation = _queue(session, settings, sample, "escalation", "lead")
    assert escalation.title.endswith("升级至街道")
    escalation_en = _queue(session, settings, sample, "escalation", "lead", Language.en)
    assert "street office" in escalation_en.title


def test_case_context_is_plain_local_and_masked(session: Session, settings: Settings, sample: Sample) -> None:
    zh = case_context(session, sample.case, Language.zh, timezone=settings.timezone)
    en = case_context(session, sample.case, "en", timezone=settings.timezone)

    assert zh["number"] == "LL-TEST-0001"
    assert zh["category"] == "设施报修" and en["category"] == "Facility repair"
    assert zh["community"] == "幸福里社区" and zh["building"] == "1栋"
    assert zh["due_at"] == "2024-05-01 12:30"  # Asia/Shanghai, not UTC
    assert zh["priority"] == 1 and zh["priority_label"] == "紧急" and en["priority_label"] == "urgent"
    assert zh["escalation_level"] == 0 and zh["escalation_label"] == "社区"
    assert zh["next_escalation_label"] == "街道" and en["escalation_label"] == "community"
    assert zh["status"] == "dispatched" and zh["status_label"] == "已派单"
    assert zh["reporter"] == mask_name(sample.reporter.name) != sample.reporter.name
    assert all(isinstance(value, str | int) for value in zh.values())

    with pytest.raises(ValidationError, match="unknown language"):
        case_context(session, sample.case, "fr")


def test_recipient_names_are_masked_for_residents_only(session: Session, sample: Sample) -> None:
    assert recipient_context(session, sample.target("reporter"))["name"] == mask_name(sample.reporter.name)
    assert recipient_context(session, sample.target("assignee"))["name"] == sample.assignee.name


def test_a_missing_context_variable_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(ConfigurationError) as caught:
        render(settings.templates_dir, template_for("receipt", "zh"), case={"description": "x"},
               recipient={"name": ""}, extra={})
    message = str(caught.value)
    assert "number" in message and "notifications/receipt.zh.md.j2" in message


def test_a_missing_template_names_the_file_and_the_folder(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        render(tmp_path, "notifications/nothing.zh.md.j2")
    assert "nothing.zh.md.j2" in str(caught.value) and str(tmp_path) in str(caught.value)


def test_one_environment_per_folder(settings: Settings) -> None:
    assert template_env(settings.templates_dir) is template_env(Path(str(settings.templates_dir)))


def test_resident_text_is_escaped_in_html_and_inert_in_markdown(tmp_path: Path) -> None:
    (tmp_path / "page.html.j2").write_text("<p>{{ text }}</p>", encoding="utf-8")
    (tmp_path / "page.html").write_text("<p>{{ text }}</p>", encoding="utf-8")
    (tmp_path / "note.md.j2").write_text("# t\n- {{ text }}", encoding="utf-8")
    typed = '<script>alert("x")</script> [点我](http://evil.example) ![](http://track.example/p.gif)'

    for name in ("page.html.j2", "page.html"):
        html = render(tmp_path, name, text=typed)
        assert "<script>" not in html and "&lt;script&gt;" in html

    markdown = render(tmp_path, "note.md.j2", text=typed + "\n# 不是标题")
    assert "<script>" not in markdown and "＜script＞" in markdown
    assert "[点我](" not in markdown and "![](" not in markdown
    assert markdown.count("\n") == 1  # typed line breaks cannot start a heading or a new list item


def test_queue_puts_a_resident_description_in_safely(session: Session, settings: Settings, sample: Sample) -> None:
    sample.case.description = "楼道灯坏了<img src=http://track.example/x.gif>\n# 紧急！"
    notification = _queue(session, settings, sample, "assignment", "assignee")
    assert "<img" not in notification.body and "＜img" in notification.body
    assert "\n# " not in notification.body


def test_queue_refuses_a_bad_target(session: Session, settings: Settings, sample: Sample) -> None:
    with pytest.raises(ValidationError, match="bad notification target"):
        queue(session, kind="receipt", target="someone", template="receipt.zh.md.j2",
              context={}, language="zh", case_id=None, templates_dir=settings.templates_dir)


# --- delivery ------------------------------------------------------------------------------


def test_deliver_through_apprise_to_a_real_receiver(
    session: Session, engine: Engine, settings: Settings, sample: Sample
) -> None:
    with NotificationReceiver() as receiver:
        notification = _queue(session, settings, sample, "assignment", "assignee")
        session.commit()
        assert pending_ids(session) == [notification.id]

        [row] = deliver(session, _ids(notification), notifier=AppriseNotifier(settings.notify.timeout_seconds),
                        global_urls=[receiver.apprise_url("linli")])

        [message] = receiver.wait_for(timeout=10)
    assert message["method"] == "POST" and message["path"] == "/linli"
    assert message["json"]["title"] == notification.title
    assert "LL-TEST-0001" in message["json"]["title"]
    assert "LL-TEST-0001" in message["json"]["message"] and DESCRIPTION in message["json"]["message"]

    stored = _reread(engine, notification.id)
    assert row.status == stored.status == NotificationStatus.sent
    assert stored.attempts == 1 and stored.error == "" and stored.sent_at is not None
    assert pending_ids(session) == []

    # Delivering again does nothing: the row is no longer pending.
    [again] = deliver(session, _ids(notification), notifier=RecordingNotifier(), global_urls=["json://x/"])
    assert again.status == NotificationStatus.sent and _reread(engine, notification.id).attempts == 1


def test_one_failed_channel_does_not_stop_the_others(
    session: Session, engine: Engine, settings: Settings, sample: Sample
) -> None:
    with NotificationReceiver(status_code=500) as broken, NotificationReceiver() as working:
        sample.assignee.contact_url = broken.apprise_url("assignee")
        sample.other.contact_url = working.apprise_url("other")
        session.add(sample.assignee)
        session.add(sample.other)
        first = _queue(session, settings, sample, "sla_warning", "assignee")
        second = _queue(session, settings, sample, "sla_warning", "other")
        session.commit()

        rows = deliver(session, _ids(first, second), notifier=AppriseNotifier(5), global_urls=[])

        assert [row.id for row in rows] == [first.id, second.id]
        broken.wait_for(timeout=10)
        [arrived] = working.wait_for(timeout=10)
    assert arrived["path"] == "/other"

    failed, sent = _reread(engine, first.id), _reread(engine, second.id)
    assert failed.status == NotificationStatus.failed and failed.sent_at is None
    assert "500" in failed.error and f"127.0.0.1:{broken.port}/assignee" in failed.error
    assert failed.attempts == 1
    assert sent.status == NotificationStatus.sent and sent.error == ""


def test_no_channel_means_recorded(session: Session, engine: Engine, settings: Settings, sample: Sample) -> None:
    notification = _queue(session, settings, sample, "receipt", "reporter")
    session.commit()
    notifier = RecordingNotifier()

    deliver(session, _ids(notification), notifier=notifier, global_urls=[])

    stored = _reread(engine, notification.id)
    assert stored.status == NotificationStatus.recorded and stored.attempts == 1
    assert notifier.sent == []


def test_a_staff_members_own_contact_url_is_used(
    session: Session, engine: Engine, settings: Settings, sample: Sample
) -> None:
    with NotificationReceiver() as own, NotificationReceiver() as everyone:
        sample.assignee.contact_url = own.apprise_url("wang")
        session.add(sample.assignee)
        session.commit()
        target = sample.target("assignee")
        assert targets_urls(session, target, [everyone.apprise_url(), own.apprise_url("wang")]) == [
            own.apprise_url("wang"), everyone.apprise_url()]
        assert targets_urls(session, sample.target("other"), []) == []

        notification = _queue(session, settings, sample, "assignment", "assignee")
        session.commit()
        deliver(session, _ids(notification), notifier=AppriseNotifier(5), global_urls=[everyone.apprise_url()])

        [mine] = own.wait_for(timeout=10)
        [copy] = everyone.wait_for(timeout=10)
    assert mine["path"] == "/wang" and "LL-TEST-0001" in mine["json"]["title"]
    assert copy["json"]["title"] == mine["json"]["title"]
    assert _reread(engine, notification.id).status == NotificationStatus.sent


def test_a_target_that_does_not_exist_fails_only_its_own_row(
    session: Session, engine: Engine, settings: Settings, sample: Sample
) -> None:
    good = _queue(session, settings, sample, "receipt", "reporter")
    ghost = queue(session, kind="receipt", target="staff:999999", template="receipt.en.md.j2",
                  context={"case": {"number": "LL-X", "location": "", "description": ""},
                           "recipient": {"name": ""}, "extra": {}},
                  language="en", case_id=None, templates_dir=settings.templates_dir)
    session.commit()
    notifier = RecordingNotifier()

    deliver(session, [*_ids(ghost, good), 424242], notifier=notifier, global_urls=["json://127.0.0.1:9/x"])

    assert _reread(engine, ghost.id).status == NotificationStatus.failed
    assert "staff:999999" in _reread(engine, ghost.id).error
    assert _reread(engine, good.id).status == NotificationStatus.sent
    assert [m.title for m in notifier.sent] == [good.title]


def test_a_burst_is_not_throttled(session: Session, engine: Engine, settings: Settings, sample: Sample) -> None:
    """Apprise sleeps 5.5 s between two sends on one object of most services (ntfy here):
    five alarms in a row must not take half a minute."""
    with NotificationReceiver() as receiver:
        urls = [receiver.apprise_url("json"), f"ntfy://127.0.0.1:{receiver.port}/linli"]
        ids = _ids(*(_queue(session, settings, sample, "sla_warning", "assignee") for _ in range(5)))
        session.commit()
        worker = threading.Thread(
            target=deliver, args=(session, ids), kwargs={"notifier": AppriseNotifier(5), "global_urls": urls}
        )
        worker.start()
        try:
            arrived = receiver.wait_for(timeout=10, count=10)
        finally:
            worker.join(timeout=60)
    assert len([m for m in arrived if m["path"] == "/json"]) == 5
    assert len([m for m in arrived if m["json"] and m["json"].get("topic") == "linli"]) == 5
    assert {_reread(engine, i).status for i in ids} == {NotificationStatus.sent}


def test_apprise_refuses_an_unreadable_url_without_showing_secrets() -> None:
    notifier = AppriseNotifier(5)
    with pytest.raises(DeliveryError, match="unknown notification URL scheme") as unknown:
        notifier.send(title="t", body="b", urls=["wxpusher-nope://AT_secret-token@host/x"])
    assert "secret" not in str(unknown.value) and "wxpusher-nope://" in str(unknown.value)
    with pytest.raises(DeliveryError, match="cannot read the json:// notification URL"):
        notifier.send(title="t", body="b", urls=["json://"])
    with pytest.raises(DeliveryError) as refused:
        notifier.send(title="t", body="b", urls=["json://linli:hunter2@127.0.0.1:9/x"])
    assert "hunter2" not in str(refused.value) and "127.0.0.1:9" in str(refused.value)
