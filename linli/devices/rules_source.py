"""Where ingest gets its alarm rules: the alarm-rules block in Prefect, else the registry's defaults.

Read through Prefect's REST API with httpx (no Prefect import here): ingest is not a flow and must
keep running with the defaults when Prefect is down.
"""

from __future__ import annotations

import logging

import httpx
import pydantic

from linli.devices.registry import AlarmRule, RuleBook

log = logging.getLogger(__name__)
BLOCK_TYPE_SLUG = "linli-alarm-rules"


def load_rules(api_url: str, block_name: str, *, timeout: float = 3.0) -> RuleBook | None:
    """The rules saved in the block `block_name`, or None when Prefect or the block is not there."""
    url = f"{api_url.rstrip('/')}/block_types/slug/{BLOCK_TYPE_SLUG}/block_documents/name/{block_name}"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as err:
        log.debug("alarm rules block not read (%s); keeping the rules in use", err)
        return None
    if response.status_code != 200:
        return None
    try:
        rules = [AlarmRule.model_validate(rule) for rule in response.json().get("data", {}).get("rules", [])]
    except pydantic.ValidationError as err:
        log.error("alarm rules block %r is invalid, keeping the rules in use: %s", block_name, err)
        return None
    return RuleBook(tuple(rules))
