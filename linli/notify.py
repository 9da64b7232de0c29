"""Notifications: render a template, record it in the outbox, deliver it through a notifier.

    queue(...)    renders ``templates/notifications/{kind}.{lang}.md.j2`` into a pending
                  ``Notification`` row, inside the caller's unit of work;
    deliver(...)  sends pending rows one by one through a ``Notifier`` and commits each outcome:
                  ``sent``, ``failed`` (with the reason) or ``recorded`` (no channel configured).

Delivery is at-least-once: a row is marked ``sent`` only after the notifier returned, in its own
commit, so a crash between the two leaves the row ``pending`` and it is sent again later —
never ``sent`` without having been sent. On PostgreSQL each row is locked (``FOR UPDATE SKIP
LOCKED``) while it is delivered, so two deliverers never send the same row at once.

Notifiers (the interface in STYLE.md point 7): ``AppriseNotifier`` reaches WeCom, DingTalk,
Feishu, e-mail, SMS, JSON webhooks …; ``RecordingNotifier`` keeps messages in memory for tests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import apprise
from apprise.manager_plugins import NotificationManager
from sqlmodel import Session, SQLModel, select

from linli.errors import ConfigurationError, DeliveryError, LinliError, NotFound, ValidationError
from linli.models import (
    Building,
    Case,
    CaseStatus,
    Category,
    Community,
    Notification,
    NotificationStatus,
    NotifyRoute,
    Resident,
    Staff,
    Volunteer,
    utcnow,
)
from linli.privacy import mask_name
from linli.settings import Language
from linli.templating import render

logger = logging.getLogger(__name__)

KINDS = ("receipt", "assignment", "rating_request", "sla_warning", "escalation", "reopened", "closed",
         "offer", "referral", "merged", "rejected")
NOTIFICATIONS_FOLDER = "notifications"
DEFAULT_TIMEZONE = "Asia/Shanghai"
TIME_FORMAT = "%Y-%m-%d %H:%M"

# Column limits of the notification table (PostgreSQL refuses longer values, SQLite would not).
MAX_TITLE, MAX_BODY, MAX_ERROR, MAX_KIND, MAX_TARGET, MAX_TEMPLATE = 200, 4000, 1000, 40, 80, 100

PRIORITY_LABELS: dict[int, dict[Language, str]] = {
    1: {Language.zh: "紧急", Language.en: "urgent"},
    2: {Language.zh: "一般", Language.en: "normal"},
    3: {Language.zh: "不急", Language.en: "low"},
}
ESCALATION_LABELS: dict[int, dict[Language, str]] = {
    0: {Language.zh: "社区", Language.en: "community"},
    1: {Language.zh: "街道", Language.en: "street office"},
    2: {Language.zh: "区级部门", Language.en: "district"},
}
STATUS_LABELS: dict[CaseStatus, dict[Language, str]] = {
    CaseStatus.reported: {Language.zh: "已上报", Language.en: "reported"},
    CaseStatus.assessing: {Language.zh: "研判中", Language.en: "being assessed"},
    CaseStatus.dispatched: {Language.zh: "已派单", Language.en: "dispatched"},
    CaseStatus.in_progress: {Language.zh: "处理中", Language.en: "in progress"},
    CaseStatus.resolved: {Language.zh: "已处理", Language.en: "resolved"},
    CaseStatus.closed: {Language.zh: "已办结", Language.en: "closed"},
    CaseStatus.merged: {Language.zh: "已合并", Language.en: "merged"},
    CaseStatus.rejected: {Language.zh: "不予受理", Language.en: "rejected"},
    CaseStatus.reopened: {Language.zh: "重新处理", Language.en: "reopened"},
}
NO_DEADLINE: dict[Language, str] = {Language.zh: "未设定", Language.en: "not set"}

# Who a target string names, and whether their name is personal data (masked) or a work name.
TARGET_MODELS: dict[str, tuple[type[SQLModel], bool]] = {
    "staff": (Staff, False),
    "resident": (Resident, True),
    "volunteer": (Volunteer, True),
    "route": (NotifyRoute, False),  # an escalation level's channel or an external agency
}


def _family_target() -> None:
    """A resident's family contact ('family:ID') is a target too (the elderly-care watch tells them)."""
    from linli.models.registry import FamilyContact

    TARGET_MODELS["family"] = (FamilyContact, True)


_family_target()


# --- context for templates -------------------------------------------------------------------


def _language(language: Language | str) -> Language:
    try:
        return Language(language)
    except ValueError as err:
        raise ValidationError(
            f"unknown language {language!r}", field="language", hint="use one of: zh, en"
        ) from err


def format_local(moment: datetime | None, timezone: str = DEFAULT_TIMEZONE) -> str:
    """`moment` as local wall-clock time 'YYYY-MM-DD HH:MM' ('' for None)."""
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(timezone)).strftime(TIME_FORMAT)


def case_context(
    session: Session, case: Case, language: Language | str, *, timezone: str = DEFAULT_TIMEZONE
) -> dict[str, Any]:
    """The plain dict templates see as `case` (names in `language`, times local, reporter masked)."""
    lang = _language(language)
    category = session.get(Category, case.category_id)
    community = session.get(Community, case.community_id)
    building = session.get(Building, case.building_id) if case.building_id is not None else None
    reporter = case.reporter_name
    if not reporter and case.reporter_id is not None:
        resident = session.get(Resident, case.reporter_id)
        reporter = resident.name if resident else ""
    category_name = ""
    if category is not None:
        category_name = category.name_zh if lang is Language.zh else category.name_en
    community_name = community.name if community else ""
    building_name = building.name if building else ""
    level = case.escalation_level
    next_level = ESCALATION_LABELS.get(level + 1, {}).get(lang, "")
    return {
        "id": case.id,
        "number": case.number,
        "description": case.description,
        "status": str(case.status),
        "status_label": STATUS_LABELS[CaseStatus(case.status)][lang],
        "priority": case.priority,
        "priority_label": PRIORITY_LABELS.get(case.priority, PRIORITY_LABELS[2])[lang],
        "category": category_name,
        "category_code": category.code if category else "",
        "community": community_name,
        "building": building_name,
        "location": " ".join(part for part in (community_name, building_name) if part),
        "created_at": format_local(case.created_at, timezone),
        "due_at": format_local(case.due_at, timezone),
        "due_at_label": format_local(case.due_at, timezone) or NO_DEADLINE[lang],
        "escalation_level": level,
        "escalation_label": ESCALATION_LABELS.get(level, ESCALATION_LABELS[2])[lang],
        "next_escalation_label": next_level,
        "reporter": mask_name(reporter),
    }


def parse_target(target: str) -> tuple[str, int]:
    """Split 'staff:3' into ('staff', 3); unknown kinds and bad ids are a ValidationError."""
    kind, _, raw_id = target.partition(":")
    if kind not in TARGET_MODELS or not raw_id.isdigit():
        raise ValidationError(
            f"bad notification target {target!r}",
            field="target",
            hint=f"write KIND:ID with KIND one of {', '.join(TARGET_MODELS)}, e.g. staff:3",
        )
    return kind, int(raw_id)


def _target_row(session: Session, target: str) -> Any:
    kind, row_id = parse_target(target)
    model, _personal = TARGET_MODELS[kind]
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"notification target {target} does not exist")
    return row


def recipient_context(session: Session, target: str) -> dict[str, Any]:
    """The dict templates see as `recipient`: a resident's or volunteer's name masked, staff as is."""
    kind, _ = parse_target(target)
    row = _target_row(session, target)
    _model, personal = TARGET_MODELS[kind]
    return {"name": mask_name(row.name) if personal else row.name, "kind": kind, "target": target}


# --- the outbox --------------------------------------------------------------------------------


def template_for(kind: str, language: Language | str) -> str:
    """The template of a notification kind in a language: 'notifications/{kind}.{lang}.md.j2'."""
    return f"{NOTIFICATIONS_FOLDER}/{kind}.{_language(language).value}.md.j2"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_title(rendered: str, template: str) -> tuple[str, str]:
    """Split a rendered template into its title (first line, '# ' removed) and body (the rest)."""
    first, _, rest = rendered.strip().partition("\n")
    title = first.strip().lstrip("#").strip()
    if not title:
        raise ConfigurationError(
            f"template {template!r} rendered an empty title", hint="start the template with '# Title'"
        )
    return title, rest.strip()


def queue(
    session: Session,
    *,
    kind: str,
    target: str,
    template: str,
    context: dict[str, Any],
    language: Language | str,
    case_id: int | None,
    templates_dir: Path,
) -> Notification:
    """Render `template` and add a pending notification to the session (flushed, not committed).

    `template` is a path under `templates_dir`; a bare file name ('receipt.zh.md.j2') is looked
    up in its `notifications/` folder.
    """
    lang = _language(language)
    parse_target(target)
    if not kind or len(kind) > MAX_KIND:
        raise ValidationError(f"bad notification kind {kind!r}", field="kind", hint=f"1–{MAX_KIND} characters")
    name = template if "/" in template else f"{NOTIFICATIONS_FOLDER}/{template}"
    if len(name) > MAX_TEMPLATE:
        raise ValidationError(f"template name too long: {name!r}", field="template")
    title, body = split_title(render(templates_dir, name, **context), name)
    notification = Notification(
        case_id=case_id,
        kind=kind,
        target=target,
        template=name,
        language=lang.value,
        title=_clip(title, MAX_TITLE),
        body=_clip(body, MAX_BODY),
        status=NotificationStatus.pending,
    )
    session.add(notification)
    session.flush()
    logger.debug("queued %s notification %s for %s", kind, notification.id, target)
    return notification


def queue_for_case(
    session: Session,
    *,
    case: Case,
    kind: str,
    target: str,
    language: Language | str,
    templates_dir: Path,
    extra: dict[str, Any] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> Notification:
    """Queue the `kind` notification about `case` for `target`, building the usual context."""
    context = {
        "case": case_context(session, case, language, timezone=timezone),
        "recipient": recipient_context(session, target),
        "extra": dict(extra or {}),
    }
    return queue(
        session,
        kind=kind,
        target=target,
        template=template_for(kind, language),
        context=context,
        language=language,
        case_id=case.id,
        templates_dir=templates_dir,
    )


# --- notifiers ---------------------------------------------------------------------------------


class Notifier(Protocol):
    """Something that delivers one message to a list of channel URLs."""

    def send(self, *, title: str, body: str, urls: list[str]) -> None:
        """Deliver the message to every URL; raise DeliveryError with the reason if any failed."""
        ...


def redact_url(url: str) -> str:
    """Only the scheme of a notification URL, for messages about a URL that could not be read."""
    scheme, sep, _rest = url.strip().partition("://")
    return f"{scheme}://…" if sep and scheme else "(a URL without a scheme)"


class _AppriseReasons(logging.Handler):
    """Collects Apprise's warnings raised in this thread: they carry the reason of a failure."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextmanager
def _apprise_reasons() -> Iterator[_AppriseReasons]:
    handler = _AppriseReasons()
    apprise_logger = logging.getLogger("apprise")
    apprise_logger.addHandler(handler)
    try:
        yield handler
    finally:
        apprise_logger.removeHandler(handler)


class AppriseNotifier:
    """Delivers through Apprise (WeCom, DingTalk, Feishu, e-mail, SMS, JSON webhooks …).

    Each send builds fresh Apprise plugin objects: Apprise throttles per object (5.5 s between
    two sends on one DingTalk or WeCom object), which would make a burst of alarms crawl.
    """

    def __init__(self, timeout_seconds: float = 10.0, *, asset: apprise.AppriseAsset | None = None) -> None:
        if timeout_seconds <= 0:
            raise ConfigurationError("notification timeout must be positive", hint="set LINLI_NOTIFY__TIMEOUT_SECONDS")
        self.timeout_seconds = timeout_seconds
        self.asset = asset or apprise.AppriseAsset(secure_logging=True)

    def _plugin(self, url: str) -> Any:
        plugin = apprise.Apprise.instantiate(url, asset=self.asset, suppress_exceptions=True)
        if plugin is None:
            scheme = url.strip().partition("://")[0].lower()
            if scheme and scheme in NotificationManager():
                problem = f"cannot read the {scheme}:// notification URL {redact_url(url)}"
            else:
                problem = f"unknown notification URL scheme in {redact_url(url)}"
            raise DeliveryError(problem, hint="check the URL against the Apprise documentation for that service")
        plugin.socket_connect_timeout = self.timeout_seconds
        plugin.socket_read_timeout = self.timeout_seconds
        return plugin

    def send(self, *, title: str, body: str, urls: list[str]) -> None:
        """Send to every URL (all are checked first); raise DeliveryError naming each that failed."""
        plugins = [self._plugin(url) for url in urls]
        failures: list[str] = []
        for plugin in plugins:
            shown = plugin.url(privacy=True).split("?", 1)[0]
            with _apprise_reasons() as reasons:
                try:
                    ok = plugin.notify(body=body, title=title, body_format=apprise.NotifyFormat.MARKDOWN)
                except Exception as err:  # a plugin bug must not stop the other channels
                    logger.exception("Apprise plugin for %s raised", shown)
                    ok, reasons.messages = False, [f"{type(err).__name__}: {err}"]
            if ok:
                logger.info("delivered %r to %s", title, shown)
            else:
                reason = " ".join(reasons.messages) or "the service refused the message"
                failures.append(f"{shown}: {reason}")
        if failures:
            raise DeliveryError(
                f"{len(failures)} of {len(urls)} channel(s) failed: " + "; ".join(failures),
                hint="check that the service is reachable and the URL is right; the row can be retried",
            )


@dataclass(frozen=True)
class SentMessage:
    """One message a RecordingNotifier took."""

    title: str
    body: str
    urls: tuple[str, ...]


class RecordingNotifier:
    """An in-memory notifier for tests of callers; URLs in `fail_urls` fail like a refused delivery."""

    def __init__(self, *, fail_urls: Iterable[str] = ()) -> None:
        self.fail_urls = set(fail_urls)
        self.sent: list[SentMessage] = []
        self._lock = threading.Lock()

    def send(self, *, title: str, body: str, urls: list[str]) -> None:
        """Record the message, or raise DeliveryError if it goes to a URL meant to fail."""
        failing = [url for url in urls if url in self.fail_urls]
        if failing:
            raise DeliveryError(f"{len(failing)} of {len(urls)} channel(s) failed: refused by test notifier")
        with self._lock:
            self.sent.append(SentMessage(title=title, body=body, urls=tuple(urls)))


# --- delivery ----------------------------------------------------------------------------------


def targets_urls(session: Session, target: str, global_urls: list[str]) -> list[str]:
    """The target's own contact URL (if set) followed by the global URLs, without duplicates."""
    row = _target_row(session, target)
    # A route may hold several channels, comma-separated; a person holds one.
    own = [url.strip() for url in (row.contact_url or "").split(",") if url.strip()]
    urls = own + [url.strip() for url in global_urls if url.strip()]
    return list(dict.fromkeys(urls))


def pending_ids(session: Session, *, limit: int = 100) -> list[int]:
    """Ids of the oldest pending notifications, at most `limit`."""
    statement = (
        select(Notification.id)
        .where(Notification.status == NotificationStatus.pending)
        .order_by(Notification.id)  # type: ignore[arg-type]
        .limit(limit)
    )
    return [row_id for row_id in session.exec(statement).all() if row_id is not None]


def _claim(session: Session, notification_id: int) -> Notification | None:
    statement = (
        select(Notification)
        .where(Notification.id == notification_id, Notification.status == NotificationStatus.pending)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return session.exec(statement).first()


def deliver(
    session: Session, notification_ids: list[int], *, notifier: Notifier, global_urls: list[str]
) -> list[Notification]:
    """Deliver the pending notifications among `notification_ids`, committing each outcome.

    One failed delivery never stops the others; rows that are not pending are left as they are.
    Returns every row found, in the order given. Commits the session after each row.
    """
    rows: list[Notification] = []
    for notification_id in notification_ids:
        notification = _claim(session, notification_id)
        if notification is None:
            existing = session.get(Notification, notification_id)
            if existing is None:
                logger.warning("notification %s does not exist; skipped", notification_id)
            else:
                rows.append(existing)
            continue
        try:
            urls = targets_urls(session, notification.target, global_urls)
            if urls:
                notifier.send(title=notification.title, body=notification.body, urls=urls)
        except LinliError as err:
            notification.status = NotificationStatus.failed
            notification.error = _clip(str(err), MAX_ERROR)
            logger.warning("notification %s to %s failed: %s", notification.id, notification.target, err)
        else:
            notification.status = NotificationStatus.sent if urls else NotificationStatus.recorded
            notification.sent_at = utcnow() if urls else None
            notification.error = ""
        notification.attempts += 1
        session.add(notification)
        session.commit()
        rows.append(notification)
    return rows
