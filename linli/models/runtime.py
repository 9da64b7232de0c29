"""Runtime bookkeeping that several processes share: which worker took which scheduled flow run."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from linli.models.base import created_at_field


class FlowRunClaim(SQLModel, table=True):
    """One worker's claim on one scheduling of a flow run (its Scheduled state); the key lets one through.

    Prefect lets a run go from Completed or Failed back to Pending, so a worker acting on a stale list of
    due runs could start a run another worker has already finished; the insert here cannot race.
    """

    __tablename__ = "flow_run_claim"
    flow_run_id: str = Field(primary_key=True, max_length=36)
    state_id: str = Field(primary_key=True, max_length=36,
                          description="The Scheduled state claimed; a rerun has a new one.")
    worker: str = Field(max_length=120)
    claimed_at: datetime = created_at_field(index=True)
