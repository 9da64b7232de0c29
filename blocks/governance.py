"""The governance-policy block: categories, rules, windows and the escalation chain, edited in the Prefect UI.

The loop's tasks read it at the start of every run (`load_policy`), so a change applies to the
next run without a deploy. A policy that does not validate is refused with every problem named;
with no block saved the seeds' categories and the settings' defaults apply.

Register the type and save the defaults once: ``python -m blocks.governance``.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import Field

from linli.errors import ConfigurationError
from linli.policy import GovernancePolicy, parse_policy


class GovernancePolicyBlock(Block):
    """Linli governance policy (治理策略): SLAs, keywords, priority/difficulty rules, claims, escalation."""

    _block_type_name = "Linli Governance Policy"
    _block_type_slug = "linli-governance-policy"
    _description = ("How Linli's closed loop assesses, dispatches and escalates cases. "
                    "Edits apply to the next flow run; an invalid policy is refused with the reason.")

    policy: GovernancePolicy = Field(default_factory=GovernancePolicy,
                                     description="The policy the loop runs by.")


def policy_from_data(data: dict[str, Any]) -> GovernancePolicy:
    """The policy of a stored block document's data, validated (ConfigurationError naming each problem)."""
    raw = data.get("policy")
    if not isinstance(raw, dict):
        raise ConfigurationError("governance policy block holds no 'policy' object",
                                 hint="edit the block in the Prefect UI or run `python -m blocks.governance`")
    return parse_policy(raw)


def load_policy(name: str) -> GovernancePolicy | None:
    """The saved policy named `name`, validated; None when no such block is saved."""
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(
                name=name, block_type_slug=GovernancePolicyBlock.get_block_type_slug())
        except ObjectNotFound:
            return None
    return policy_from_data(dict(document.data))


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
        print(f"saved the default governance policy as block '{name}'")
    else:
        print(f"governance policy block '{name}' already exists; left as it is")


if __name__ == "__main__":
    main()
