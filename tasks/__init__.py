"""Prefect tasks: thin wrappers that open a session, call `linli`, and return plain data."""
