"""The governance-policy block: categories, rules, windows and the escalation chain, edited in the Prefect UI.

The loop's tasks read it at the start of every run (`load_policy`), so a change applies to the
next run without a deploy. A policy that does not validate is refused with every problem named;
with no block saved the seeds' categories and the settings' defaults apply.

Register the type and save the defaults once: ``python -m blocks.governance``.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field

from linli.policy import BLOCK_TYPE_SLUG, GovernancePolicy, load_policy, parse_policy

log = logging.getLogger(__name__)

__all__ = ["GovernancePolicyBlock", "load_policy", "save_policy"]


class GovernancePolicyBlock(Block):
    """Linli governance policy (治理策略): SLAs, keywords, priority/difficulty rules, claims, escalation."""

    _block_type_name = "Linli Governance Policy"
    _block_type_slug = BLOCK_TYPE_SLUG
    _description = ("How Linli's closed loop assesses, dispatches and escalates cases. "
                    "Edits apply to the next flow run; an invalid policy is refused with the reason.")

    policy: GovernancePolicy = Field(default_factory=GovernancePolicy,
                                     description="The policy the loop runs by.")


def save_policy(policy: GovernancePolicy | dict[str, Any], name: str, *, overwrite: bool = True) -> GovernancePolicy:
    """Validate and save a policy as the block `name`; an invalid one is refused and nothing is saved."""
    checked = parse_policy(policy)
    GovernancePolicyBlock(policy=checked).save(name, overwrite=overwrite)
    return checked


def main() -> None:
    """Register the block type and save the default policy unless a block of that name exists."""
    from linli.settings import apply_prefect_environment, get_settings

    settings = get_settings()
    apply_prefect_environment(settings)
    GovernancePolicyBlock.register_type_and_schema()
    name = settings.governance.policy_block
    if load_policy(name) is None:
        save_policy(GovernancePolicy(), name)
        log.info("saved the default governance policy as block '%s'", name)
    else:
        log.info("governance policy block '%s' already exists; left as it is", name)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
