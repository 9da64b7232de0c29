"""Processes: each low-code DAG's graph, schedule, trigger, where its definition comes from, its last
runs with their states, and per step the last error."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from pydantic import ValidationError as PydanticValidationError

from dashboards.access import page_guard
from dashboards.texts import current_language, duration, local_time, t
from linli import prefect_api
from linli.dag import graph
from linli.dag.model import DagDefinition
from linli.dag.validate import DagInvalid, parse_yaml
from linli.errors import DeliveryError
from linli.settings import get_settings

ICONS = {"COMPLETED": "✅", "RUNNING": "🔄", "FAILED": "❌", "CRASHED": "💥", "SCHEDULED": "🕒", "PENDING": "⏳",
         "CANCELLED": "🚫"}
lang = current_language()
settings = get_settings()
api_url = settings.prefect_api_url
st.title(t("processes_title", lang))
page_guard("view_processes", lang)  # roles, once accounts exist
st.caption(t("processes_help", lang))


def _structure(text: str, source: str) -> DagDefinition | None:
    """The definition's structure (enough to draw it); the runner does the full validation."""
    try:
        return DagDefinition.model_validate(parse_yaml(text, source))
    except (DagInvalid, PydanticValidationError):
        return None


def shipped(folder: Path) -> dict[str, DagDefinition]:
    """The shipped definitions by name."""
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        definition = _structure(path.read_text(encoding="utf-8"), str(path))
        if definition is not None:
            found[definition.name] = definition
    return found


definitions = shipped(settings.dag.definitions_dir)
origins = {name: str(settings.dag.definitions_dir / f"{name}.yaml") for name in definitions}
refusals: dict[str, str] = {}
reachable = True
try:
    for name, override in prefect_api.dag_overrides(api_url).items():
        text = override.last_good_yaml if override.refused else override.yaml
        definition = _structure(text, name) if text else None
        if definition is not None:
            definitions[name] = definition
            origins[name] = t("origin_override", lang, name=name)
        if override.refused:
            refusals[name] = override.refused
except DeliveryError as err:
    reachable = False
    st.warning(f"{t('prefect_unreachable', lang)}\n\n{err}")

if not definitions:
    st.info(t("no_processes", lang))
    st.stop()
name = st.selectbox(t("process", lang), sorted(definitions), key="process")
definition = definitions[name]
schedule, trigger = graph.describe_timing(definition)
st.markdown(f"**{definition.name}** — {definition.description.strip()}")
left, middle, right = st.columns(3)
left.metric(t("col_schedule", lang), schedule or "—")
middle.metric(t("col_trigger", lang), ", ".join(definition.trigger.events) if definition.trigger else "—")
right.metric(t("col_steps", lang), len(definition.steps))
st.caption(f"{t('origin', lang)}: {origins[name]}" + (f" · {t('col_triggers', lang)}: {trigger}" if trigger else ""))
if name in refusals:
    st.error(f"{t('override_refused', lang)}\n\n```\n{refusals[name]}\n```")

runs: list[prefect_api.FlowRunRow] = []
errors: dict[str, prefect_api.StepError] = {}
if reachable:
    try:
        runs = prefect_api.dag_runs(api_url, name)
        errors = prefect_api.step_errors(api_url, runs)
    except DeliveryError as err:
        st.warning(f"{t('prefect_unreachable', lang)}\n\n{err}")
st.graphviz_chart(graph.dot(definition, errors=set(errors)))

st.subheader(t("steps", lang))
st.dataframe([{
    t("col_step", lang): step_name, t("col_task", lang): step.task, t("col_after", lang): ", ".join(step.after),
    t("col_when", lang): step.when or "",
    t("col_last_error", lang): (f"{local_time(errors[step_name].at, settings.timezone)} "
                                f"{errors[step_name].message}") if step_name in errors else "",
} for step_name, step in definition.steps.items()], hide_index=True)

st.subheader(t("recent_runs", lang))
if runs:
    st.dataframe([{
        t("col_run", lang): run.name,
        t("col_state", lang): f"{ICONS.get(run.state_type or '', '')} {run.state_name or ''}".strip(),
        t("col_start", lang): local_time(run.start_time, settings.timezone),
        t("col_duration", lang): duration(run.duration),
    } for run in runs], hide_index=True)
else:
    st.info(t("no_runs", lang))
