"""Prefect flows: one module per governance stage, plus the SLA watch and the deployments that serve them."""
