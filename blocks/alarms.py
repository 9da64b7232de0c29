"""The alarm-rules block: thresholds, durations, rates and event kinds per device type, edited in the Prefect UI.

Ingest re-reads the block named in LINLI_DEVICES__ALARM_RULES_BLOCK every few seconds (through
Prefect's REST API, linli.devices.rules_source), so an edit takes effect without a restart.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from linli.devices.registry import DEFAULT_RULES, AlarmRule, RuleBook
from linli.devices.rules_source import BLOCK_TYPE_SLUG


class AlarmRules(Block):
    """Alarm rules per device type, with severity; life-safety rules notify staff straight from ingest."""

    _block_type_name = "Linli Alarm Rules"
    _block_type_slug = BLOCK_TYPE_SLUG
    _description = "Alarm rules per device type (threshold, duration, rate of change, event kinds) and severity."

    rules: list[AlarmRule] = Field(default_factory=lambda: [rule.model_copy() for rule in DEFAULT_RULES],
                                   description="One line per rule; a device type may have several.")

    def rule_book(self) -> RuleBook:
        """The rules, grouped for ingest."""
        return RuleBook(tuple(self.rules))
