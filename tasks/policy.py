"""The loop's configuration for this run: the settings plus the governance policy read from its block now."""

from __future__ import annotations

from linli.loop import LoopConfig
from linli.policy import load_policy
from linli.settings import get_settings


def current_loop_config() -> LoopConfig:
    """Read the policy block at the start of each step, so an admin's edit applies to the next run."""
    settings = get_settings()
    return LoopConfig.from_settings(settings, load_policy(settings.governance.policy_block))
