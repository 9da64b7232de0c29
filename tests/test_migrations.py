"""Alembic owns the schema: after `upgrade`, the database matches the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import linli.models  # noqa: F401  (registers every table on the metadata)
from linli.telemetry import include_name


def test_the_migrations_build_exactly_the_models_schema(engine: Engine) -> None:
    # Several branches each wrote a migration; a missing column or index would only show in production.
    # PostgreSQL's monthly partitions of the message tables are left out: their parents are compared.
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True,
                                                                  "include_name": include_name}), SQLModel.metadata)
    assert diff == [], "the models and the migrations disagree — write a migration (`alembic revision "
    "--autogenerate`) for: " + repr(diff)
