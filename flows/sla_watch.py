"""督办 — the SLA watch: warnings, escalations, auto-closing and restarting stuck stages, on a schedule."""

from prefect import flow

from tasks.cases import SweepSummary, announce, sweep_slas
from tasks.notify import deliver_notifications


@flow(name="sla-watch", flow_run_name="sla-watch")
async def sla_watch() -> SweepSummary:
    """One sweep over open cases."""
    swept = sweep_slas()
    deliver_notifications(swept.notifications)
    announce(swept.events)
    return swept
