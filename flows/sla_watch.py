"""督办 — the SLA watch: warnings, escalations, auto-closing and restarting stuck stages, on a schedule."""

from prefect import flow

from tasks.cases import SweepSummary, publish, sweep_slas


@flow(name="sla-watch", flow_run_name="sla-watch")
async def sla_watch() -> SweepSummary:
    """One sweep over open cases."""
    swept = await sweep_slas()
    await publish(swept)
    return swept
