"""What every stage of the loop shares: its configuration, its result, and small look-ups."""

from __future__ import annotations

import dataclasses
from dataclasses import field, replace
from pathlib import Path
from typing import Any

from pydantic.dataclasses import dataclass
from sqlmodel import Session, select

from linli import notify
from linli.errors import NotFound
from linli.events import CaseEventOut, case_event
from linli.models import Case, Category
from linli.policy import GovernancePolicy, default_policy
from linli.settings import Settings


@dataclasses.dataclass(frozen=True)  # plain: it carries a policy model, never crosses a task boundary
class LoopConfig:
    """Settings the loop needs, passed down from `Settings` and the governance policy (block or defaults)."""

    language: str = "zh"
    templates_dir: Path = Path("templates")
    good_rating: int = 3
    auto_close_days: float = 7
    stuck_minutes: float = 2
    timezone: str = "Asia/Shanghai"
    policy: GovernancePolicy = field(default_factory=default_policy)

    @classmethod
    def from_settings(cls, settings: Settings, policy: GovernancePolicy | None = None) -> LoopConfig:
        """The loop configuration of these settings, run by `policy` (the defaults of the settings if None)."""
        policy = policy or default_policy(auto_close_days=settings.loop.auto_close_days,
                                          good_rating=settings.loop.good_rating)
        return cls(
            language=str(settings.language),
            templates_dir=settings.templates_dir,
            good_rating=policy.good_rating,
            auto_close_days=policy.auto_close_days,
            stuck_minutes=settings.loop.stuck_minutes,
            timezone=settings.timezone,
            policy=policy,
        )

    def with_policy(self, policy: GovernancePolicy) -> LoopConfig:
        """The same configuration run by another policy (its rating and auto-close values too)."""
        return replace(self, policy=policy, good_rating=policy.good_rating, auto_close_days=policy.auto_close_days)


@dataclass
class StepResult:
    """What one step did: the case, its new status, notifications to deliver, events to emit."""

    case_id: int
    case_number: str
    status: str
    detail: str = ""
    notifications: list[int] = field(default_factory=list)
    events: list[CaseEventOut] = field(default_factory=list)

    def announce(self, what: str, **payload: Any) -> None:
        """Add the event `linli.case.<what>` for this case."""
        self.events.append(case_event(what, self.case_id, self.case_number, **payload))


def get_case(session: Session, case_ref: int | str) -> Case:
    """A case by id or by its public number; NotFound otherwise."""
    if isinstance(case_ref, int) or (isinstance(case_ref, str) and case_ref.isdigit()):
        case = session.get(Case, int(case_ref))
    else:
        case = session.exec(select(Case).where(Case.number == case_ref)).first()
    if case is None:
        raise NotFound(f"no case {case_ref}", hint="list cases with `linli cases`")
    return case


def lock_case(session: Session, case_id: int) -> Case:
    """A case read FOR UPDATE (PostgreSQL), so two flows never move it at once."""
    case = session.exec(select(Case).where(Case.id == case_id).with_for_update()).first()
    if case is None:
        raise NotFound(f"no case with id {case_id}", hint="list cases with `linli cases`")
    return case


def category_of(session: Session, case: Case) -> Category:
    """The category of a case."""
    category = session.get(Category, case.category_id)
    if category is None:  # a foreign key makes this impossible; keep the error clear anyway
        raise NotFound(f"case {case.number} names a missing category {case.category_id}")
    return category


def queue_notice(
    session: Session, config: LoopConfig, case: Case, *, kind: str, target: str, extra: dict[str, Any] | None = None
) -> int:
    """Render and record one notification about `case` for `target`; return its id (delivered later)."""
    row = notify.queue_for_case(session, case=case, kind=kind, target=target, language=config.language,
                                templates_dir=config.templates_dir, extra=extra, timezone=config.timezone)
    assert row.id is not None
    return row.id
