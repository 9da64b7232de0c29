"""The governance policy: what a street-office admin tunes — categories, rules, windows, escalation.

Everything here is a typed pydantic model; the rules are tables (lists of rows), evaluated in
order, never `if/elif` chains. The Prefect block in ``blocks/governance.py`` stores one
`GovernancePolicy` that the loop's tasks read at the start of every run, so an edit applies to
the next run without a deploy. With no block saved, `default_policy` (the seeds' categories and
the settings' defaults) is used.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from linli.errors import ConfigurationError

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32,
                                        pattern=r"^[a-z0-9_]+$")]
MAX_ESCALATION_LEVELS = 3  # case.escalation_level is 0..2: community, street office, district


class Route(StrEnum):
    """Where an assessed case goes: offered to volunteers, to a staff team, or referred outside."""

    volunteer_pool = "volunteer_pool"
    staff_team = "staff_team"
    external_agency = "external_agency"


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CategoryPolicy(_Row):
    """One category's SLA, keywords and routing."""

    code: Code = Field(description="Category code, e.g. facility_repair (must exist in Linli's categories).")
    sla_hours: float = Field(gt=0, le=24 * 90, description="Hours to resolve before the case escalates one level.")
    warning_hours: float = Field(ge=0, description="Hours before the deadline when the assignee is warned.")
    keywords: list[str] = Field(default_factory=list,
                                description="Words in a report's text that suggest this category.")
    route: Route = Field(default=Route.staff_team, description="Where its cases go after assessment.")
    agency: str = Field(default="", description="Agency code when route is external_agency.")
    team: str = Field(default="", description="Staff team for fallback dispatch; empty: the category's team.")
    difficulty: int = Field(default=2, ge=1, le=3, description="Default difficulty 1 easy … 3 hard.")

    @model_validator(mode="after")
    def _warning_before_deadline(self) -> CategoryPolicy:
        if self.warning_hours >= self.sla_hours:
            raise ValueError(f"category {self.code}: warning_hours ({self.warning_hours:g}) must be less than "
                             f"sla_hours ({self.sla_hours:g})")
        if self.route == Route.external_agency and not self.agency:
            raise ValueError(f"category {self.code}: route external_agency needs an agency code")
        return self


class PriorityRule(_Row):
    """If the text holds any keyword (or the category is listed), the case gets this priority."""

    priority: int = Field(ge=1, le=3, description="1 urgent, 2 normal, 3 low.")
    keywords: list[str] = Field(default_factory=list, description="Any of these words in the text matches.")
    categories: list[Code] = Field(default_factory=list, description="Any of these categories matches.")

    @model_validator(mode="after")
    def _matches_something(self) -> PriorityRule:
        if not self.keywords and not self.categories:
            raise ValueError("a priority rule needs keywords or categories, or it would match everything")
        return self


class DifficultyRule(_Row):
    """If the text holds any keyword (and the category is listed, when any are), this difficulty applies."""

    difficulty: int = Field(ge=1, le=3, description="1 easy … 3 hard.")
    keywords: list[str] = Field(default_factory=list, description="Any of these words in the text matches.")
    categories: list[Code] = Field(default_factory=list, description="Only these categories (empty: any).")

    @model_validator(mode="after")
    def _matches_something(self) -> DifficultyRule:
        if not self.keywords and not self.categories:
            raise ValueError("a difficulty rule needs keywords or categories, or it would match everything")
        return self


class RejectRule(_Row):
    """A report whose text holds any of these words is rejected with the reason given."""

    keywords: list[str] = Field(min_length=1, description="Any of these words in the text matches.")
    reason: str = Field(min_length=1, max_length=300, description="Told to the reporter.")


class DuplicatePolicy(_Row):
    """Same category within `radius_m` metres and `window_hours` hours → merged into the open case."""

    radius_m: float = Field(default=100, ge=0, le=5000, description="Metres between two reports of one problem.")
    window_hours: float = Field(default=24, ge=0, le=24 * 30, description="Hours between two reports of one problem.")


class ClaimPolicy(_Row):
    """The volunteer pool (抢单)."""

    window_minutes: float = Field(default=30, gt=0, le=24 * 60,
                                  description="Minutes a case stays in the pool before fallback dispatch.")
    max_open_claims: int = Field(default=2, ge=1, le=50, description="Open claims one volunteer may hold.")
    max_difficulty: int = Field(default=2, ge=1, le=3,
                                description="Harder cases skip the pool and go straight to staff.")


class DispatchPolicy(_Row):
    """Fallback dispatch among on-duty staff."""

    lead_from_difficulty: int = Field(default=3, ge=1, le=3,
                                      description="Cases this hard go to the team lead first, not a handler.")


class EscalationLevel(_Row):
    """One level of the escalation chain and how it is told."""

    level: int = Field(ge=0, le=MAX_ESCALATION_LEVELS - 1, description="0 community, 1 street office, 2 district.")
    name_zh: str = Field(min_length=1, max_length=50)
    name_en: str = Field(min_length=1, max_length=80)
    notify_urls: list[str] = Field(default_factory=list,
                                   description="Apprise URLs this level's notifications go to (besides staff).")
    notify_staff: bool = Field(default=True, description="Also tell the team lead and this level's officers.")


class Agency(_Row):
    """An external agency cases are referred to (legal-aid centre, utility, police station …)."""

    code: Code
    name: str = Field(min_length=1, max_length=100)
    contact_url: str = Field(default="", max_length=500, description="Apprise URL reaching the agency.")


def _seed_categories() -> list[CategoryPolicy]:
    from linli.seed import CATEGORIES

    routes = {"elderly_care": Route.volunteer_pool, "sanitation": Route.volunteer_pool,
              "legal_advice": Route.external_agency}
    return [CategoryPolicy(code=code, sla_hours=sla, warning_hours=warn,
                           keywords=[w for w in keywords.split(",") if w],
                           route=routes.get(code, Route.staff_team),
                           agency="legal_aid" if code == "legal_advice" else "")
            for code, _zh, _en, _team, sla, warn, keywords in CATEGORIES]


def _default_priority_rules() -> list[PriorityRule]:
    return [
        PriorityRule(priority=1, categories=["fire_hazard", "public_security"]),
        PriorityRule(priority=1, keywords=["紧急", "危险", "着火", "冒烟", "煤气", "燃气",
                                           "urgent", "danger", "fire", "smoke", "gas"]),
    ]


def _default_levels() -> list[EscalationLevel]:
    return [EscalationLevel(level=0, name_zh="社区", name_en="community"),
            EscalationLevel(level=1, name_zh="街道", name_en="street office"),
            EscalationLevel(level=2, name_zh="区级部门", name_en="district")]


class GovernancePolicy(_Row):
    """The whole policy the loop runs by; validated as a whole, refused with every problem named."""

    categories: list[CategoryPolicy] = Field(default_factory=_seed_categories)
    priority_rules: list[PriorityRule] = Field(default_factory=_default_priority_rules,
                                               description="First matching row wins; none: priority 2.")
    difficulty_rules: list[DifficultyRule] = Field(default_factory=list,
                                                   description="First matching row wins; none: the category's.")
    reject_rules: list[RejectRule] = Field(default_factory=list)
    duplicate: DuplicatePolicy = Field(default_factory=DuplicatePolicy)
    claim: ClaimPolicy = Field(default_factory=ClaimPolicy)
    dispatch: DispatchPolicy = Field(default_factory=DispatchPolicy)
    escalation: list[EscalationLevel] = Field(default_factory=_default_levels)
    agencies: list[Agency] = Field(default_factory=lambda: [Agency(code="legal_aid", name="法律援助中心")])
    auto_close_days: float = Field(default=7, gt=0, le=90, description="Unrated resolved cases close after this.")
    good_rating: int = Field(default=3, ge=1, le=5, description="Ratings at or above this close a case.")

    @model_validator(mode="after")
    def _consistent(self) -> GovernancePolicy:
        codes = [c.code for c in self.categories]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"category codes appear twice: {', '.join(dupes)}")
        agency_codes = {a.code for a in self.agencies}
        for c in self.categories:
            if c.agency and c.agency not in agency_codes:
                raise ValueError(f"category {c.code} names agency '{c.agency}', which is not in agencies "
                                 f"({', '.join(sorted(agency_codes)) or 'none'})")
        levels = [lvl.level for lvl in self.escalation]
        if levels != list(range(len(levels))) or not levels:
            raise ValueError(f"escalation levels must be 0, 1, 2 … in order without gaps; got {levels}")
        return self

    def category(self, code: str) -> CategoryPolicy | None:
        """The row of a category code, if the policy has one."""
        return next((c for c in self.categories if c.code == code), None)

    def agency(self, code: str) -> Agency | None:
        """An agency by code."""
        return next((a for a in self.agencies if a.code == code), None)

    def level(self, level: int) -> EscalationLevel | None:
        """An escalation level, if the chain has it."""
        return next((lvl for lvl in self.escalation if lvl.level == level), None)

    @property
    def top_level(self) -> int:
        """The highest escalation level of the chain."""
        return max(lvl.level for lvl in self.escalation)


def default_policy(*, auto_close_days: float | None = None, good_rating: int | None = None) -> GovernancePolicy:
    """The policy used while no block is saved: the seeds' categories and the settings' defaults."""
    updates: dict[str, Any] = {}
    if auto_close_days is not None:
        updates["auto_close_days"] = auto_close_days
    if good_rating is not None:
        updates["good_rating"] = good_rating
    return GovernancePolicy(**updates)


def explain(err: pydantic.ValidationError) -> str:
    """Every problem in a policy, one per line, with where it is ('categories.2.sla_hours: …')."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "policy"
        lines.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def parse_policy(data: dict[str, Any] | GovernancePolicy) -> GovernancePolicy:
    """Validate a policy; ConfigurationError naming every problem otherwise."""
    if isinstance(data, GovernancePolicy):
        data = data.model_dump()
    try:
        return GovernancePolicy.model_validate(data)
    except pydantic.ValidationError as err:
        raise ConfigurationError(f"governance policy refused — {explain(err)}",
                                 hint="fix the fields named and save the block again; "
                                 "nothing was changed") from err


BLOCK_TYPE_SLUG = "linli-governance-policy"


def policy_from_block_data(data: dict[str, Any]) -> GovernancePolicy:
    """The policy of a stored block document's data, validated (ConfigurationError naming each problem)."""
    raw = data.get("policy")
    if not isinstance(raw, dict):
        raise ConfigurationError("governance policy block holds no 'policy' object",
                                 hint="edit the block in the Prefect UI or run `python -m blocks.governance`")
    return parse_policy(raw)


def load_policy(name: str) -> GovernancePolicy | None:
    """The policy saved in the Prefect block `name`, validated; None when no such block is saved.

    Read through Prefect's client (not the Block class), so the API and the CLI can read it too.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name=name, block_type_slug=BLOCK_TYPE_SLUG)
        except ObjectNotFound:
            return None
    return policy_from_block_data(dict(document.data))


# --- rule tables ----------------------------------------------------------------------------


def _has_any(text: str, words: list[str]) -> bool:
    lowered = text.lower()
    return any(w.strip().lower() in lowered for w in words if w.strip())


def priority_for(policy: GovernancePolicy, category: str, text: str) -> int:
    """The first priority rule matching the category or text; 2 (normal) when none does."""
    for rule in policy.priority_rules:
        if category in rule.categories or (rule.keywords and _has_any(text, rule.keywords)):
            return rule.priority
    return 2


def difficulty_for(policy: GovernancePolicy, category: str, text: str) -> int:
    """The first difficulty rule matching; the category's default otherwise."""
    for rule in policy.difficulty_rules:
        in_category = not rule.categories or category in rule.categories
        if in_category and (not rule.keywords or _has_any(text, rule.keywords)):
            return rule.difficulty
    row = policy.category(category)
    return row.difficulty if row else 2


def rejection_for(policy: GovernancePolicy, text: str) -> str | None:
    """The reason of the first reject rule matching the text, if any."""
    for rule in policy.reject_rules:
        if _has_any(text, rule.keywords):
            return rule.reason
    return None


def route_for(policy: GovernancePolicy, category: str, difficulty: int) -> Route:
    """Where a case goes: the category's route, except that hard cases skip the volunteer pool."""
    row = policy.category(category)
    route = row.route if row else Route.staff_team
    if route == Route.volunteer_pool and difficulty > policy.claim.max_difficulty:
        return Route.staff_team
    return route


def suggest_category(policy: GovernancePolicy, text: str) -> str | None:
    """The category code whose keywords occur most in the text (ties: the first listed)."""
    lowered = text.lower()
    best, best_hits = None, 0
    for row in policy.categories:
        hits = sum(1 for w in row.keywords if w.strip() and w.strip().lower() in lowered)
        if hits > best_hits:
            best, best_hits = row.code, hits
    return best
