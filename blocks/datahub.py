"""Data-hub endpoint blocks: where access and vehicle records are pushed, with what secret, template and policy."""

from __future__ import annotations

from prefect.blocks.core import Block

from linli.datahub import EndpointConfig, EndpointFields


class DatahubEndpoint(Block, EndpointFields):
    """One endpoint of the city data hub or the public-security platform (一次采集，多方使用).

    Its fields are `linli.datahub.EndpointFields` (one definition for the block and the push); the
    block document's name is the endpoint's name, under which its cursor and status are kept.
    """

    _block_type_name = "Linli Data-hub Endpoint"
    _block_type_slug = "linli-datahub-endpoint"
    _description = "Push access and vehicle records to a city data hub endpoint, masked by a field policy."

    def config(self, name: str) -> EndpointConfig:
        """The endpoint as plain configuration, named after the block document."""
        return EndpointConfig(name=name, **{field: getattr(self, field) for field in EndpointFields.model_fields})
