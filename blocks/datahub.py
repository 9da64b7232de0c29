"""Data-hub endpoint blocks: where access and vehicle records are pushed, with what secret, template and policy."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from linli.datahub import DEFAULT_TEMPLATE, EndpointConfig, FieldAction


class DatahubEndpoint(Block):
    """One endpoint of the city data hub or the public-security platform (一次采集，多方使用)."""

    _block_type_name = "Linli Data-hub Endpoint"
    _block_type_slug = "linli-datahub-endpoint"
    _description = "Push access and vehicle records to a city data hub endpoint, masked by a field policy."

    url: str = Field(description="Where batches of records are POSTed (JSON).")
    auth_header: str = Field(default="Authorization", description="Header that carries the secret.")
    auth_value: SecretStr = Field(default=SecretStr(""), description="Secret header value, e.g. 'Bearer …'.")
    kinds: list[str] = Field(default_factory=lambda: ["access", "vehicle"], description="Record kinds to push.")
    payload_template: str = Field(default=DEFAULT_TEMPLATE, description="Jinja2 template of the JSON body "
                                  "(sees `records` and `endpoint`); runs sandboxed.")
    field_policy: dict[str, FieldAction] = Field(
        default_factory=lambda: {"credential_ref": "mask", "plate": "mask"},
        description="Per field: keep, mask or drop (ID numbers and plates are masked by default).")
    batch_size: int = Field(default=500, ge=1, le=10000, description="Records per request.")
    max_attempts: int = Field(default=8, ge=1, description="Failed attempts before a batch is parked "
                              "and staff are alerted.")
    backoff_seconds: float = Field(default=2, gt=0, description="First retry delay; doubles, at most 60 s.")

    def config(self, name: str) -> EndpointConfig:
        """The endpoint as plain configuration, named after the block document."""
        return EndpointConfig(name=name, url=self.url, auth_header=self.auth_header, auth_value=self.auth_value,
                              kinds=self.kinds, payload_template=self.payload_template,
                              field_policy=self.field_policy, batch_size=self.batch_size,
                              max_attempts=self.max_attempts, backoff_seconds=self.backoff_seconds)
