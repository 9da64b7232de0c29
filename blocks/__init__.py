"""Prefect Block types that admins edit in the Prefect UI."""
