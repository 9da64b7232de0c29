"""DAG definitions: validation errors that name the step, the sandbox, the shipped files, graphs, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import tests.dag_tasks  # noqa: F401 — registers testing.*
from linli.dag import graph
from linli.dag.expressions import ExpressionError, render
from linli.dag.plan import bind_params
from linli.dag.registry import REGISTRY, load_task_modules
from linli.dag.validate import DagInvalid, load_folder, load_text
from linli.settings import get_settings

GOOD = {
    "name": "probe",
    "params": {"n": 3, "who": {"type": "array", "default": ["a", "b"]}},
    "steps": {
        "first": {"task": "testing.record", "with": {"label": "one"}},
        "second": {"task": "testing.count", "after": ["first"], "with": {"items": "{{ params.who }}"}},
        "third": {"task": "testing.record", "after": ["second"],
                  "when": "{{ steps.second.result > 1 }}", "with": {"label": "n={{ steps.second.result }}"}},
    },
}


def _issues(change: dict) -> list[str]:  # type: ignore[type-arg]
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for step, fields in change.items():
        if step == "top":
            data.update(fields)
        else:
            data["steps"].setdefault(step, {}).update(fields)
    with pytest.raises(DagInvalid) as caught:
        load_text(yaml.safe_dump(data, allow_unicode=True), source="probe.yaml", registry=load_task_modules([]))
    assert caught.value.issues, "DagInvalid without issues"
    assert all(issue.source == "probe.yaml" for issue in caught.value.issues)
    return [str(issue) for issue in caught.value.issues]


def test_the_good_definition_validates() -> None:
    definition = load_text(yaml.safe_dump(GOOD), source="probe.yaml", registry=REGISTRY)
    assert list(definition.steps) == ["first", "second", "third"]


def test_unknown_task_names_the_step_and_suggests_the_right_one() -> None:
    (issue,) = _issues({"first": {"task": "testing.recrod"}})
    assert "step 'first'" in issue and "unknown task 'testing.recrod'" in issue and "testing.record" in issue


def test_unknown_parameter_names_the_step_and_what_the_task_takes() -> None:
    (issue,) = _issues({"first": {"with": {"label": "x", "lable": "y"}}})
    assert "step 'first'" in issue and "no parameter 'lable'" in issue and "label: str" in issue


def test_mistyped_parameter_names_the_step() -> None:
    (issue,) = _issues({"second": {"with": {"items": 5}}})
    assert "step 'second'" in issue and "parameter 'items'" in issue and "wrong type" in issue


def test_missing_required_parameter_names_the_step() -> None:
    (issue,) = _issues({"first": {"with": {}}})
    assert "step 'first'" in issue and "missing required parameter 'label'" in issue


def test_unknown_step_in_after_names_the_step() -> None:
    issues = _issues({"third": {"after": ["secnd"]}})
    assert any("step 'third'" in i and "'secnd', which is not defined" in i and "second" in i for i in issues)


def test_a_cycle_is_reported_with_its_path() -> None:
    issues = _issues({"first": {"after": ["third"]}})
    (cycle,) = [i for i in issues if "cycle" in i]
    assert "step '" in cycle and "first" in cycle and "second" in cycle and "third" in cycle


def test_an_expression_reading_a_step_that_is_not_upstream_names_both() -> None:
    (issue,) = _issues({"second": {"after": [], "with": {"items": "{{ steps.third.result }}"}}})
    assert "step 'second'" in issue and "steps.third" in issue and "not upstream" in issue and "after:" in issue


def test_an_expression_using_an_undefined_param_names_the_step() -> None:
    (issue,) = _issues({"second": {"with": {"items": "{{ params.whom }}"}}})
    assert "step 'second'" in issue and "params.whom" in issue


def test_a_bad_cron_says_how_to_write_one() -> None:
    (issue,) = _issues({"top": {"schedule": {"cron": "every monday"}}})
    assert "schedule.cron" in issue and "bad cron" in issue and "five fields" in issue


def test_a_yaml_syntax_error_gives_the_line() -> None:
    with pytest.raises(DagInvalid) as caught:
        load_text("name: x\nsteps:\n  a: {task: testing.record\n", source="x.yaml", registry=REGISTRY)
    assert "line 4" in caught.value.text("en") and "x.yaml" in caught.value.text("en")
    assert "第 4 行" in str(caught.value)  # zh first


@pytest.mark.parametrize("expression", [
    "{{ params.__class__ }}",
    "{{ params.n.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__ }}",
    "{{ steps.first.result.__init__.__globals__ }}",
])
def test_the_sandbox_refuses_dunder_attributes(expression: str) -> None:
    context = {"params": {"n": 1}, "steps": {"first": {"result": "x"}}, "trigger": {}, "run": {}}
    with pytest.raises(ExpressionError, match="not allowed"):
        render(expression, context)


@pytest.mark.parametrize("expression", [
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os }}",
    "{% from 'os' import system %}",
    "{% extends '/etc/hostname' %}",
])
def test_the_sandbox_refuses_imports_and_file_access(expression: str) -> None:
    with pytest.raises(ExpressionError, match="not allowed"):
        render(expression, {"params": {}})
    (issue,) = _issues({"first": {"with": {"label": expression}}})
    assert "step 'first'" in issue and "not allowed" in issue


@pytest.mark.parametrize("name", ["lipsum", "cycler", "joiner", "namespace", "range", "config", "self"])
def test_the_sandbox_has_no_globals_to_reach_python_through(name: str) -> None:
    with pytest.raises(ExpressionError):
        render("{{ " + name + " }}", {"params": {}})
    issues = _issues({"first": {"with": {"label": "{{ " + name + " }}"}}})
    assert any(f"unknown name '{name}'" in i or f"uses '{name}', which is not allowed" in i for i in issues)


def test_a_single_expression_keeps_its_type_and_mixed_text_renders_a_string() -> None:
    context = {"params": {"who": ["a", "b"]}}
    assert render("{{ params.who }}", context) == ["a", "b"]
    assert render("{{ params.who | length }} people", context) == "2 people"


def test_every_shipped_definition_validates() -> None:
    settings = get_settings()
    definitions = load_folder(settings.dag.definitions_dir, registry=load_task_modules(settings.dag.task_modules))
    assert {"report", "assess", "dispatch", "evaluate", "sla-watch", "elderly-care-checkin",
            "weekly-summary"} <= set(definitions)


def test_params_are_bound_with_defaults_and_checked() -> None:
    definition = load_text(yaml.safe_dump(GOOD), source="probe.yaml", registry=REGISTRY)
    assert bind_params(definition, {"n": "5"}, source="probe.yaml") == {"n": 5, "who": ["a", "b"]}
    with pytest.raises(DagInvalid) as unknown:
        bind_params(definition, {"m": 1}, source="probe.yaml")
    assert "unknown parameter 'm'" in unknown.value.text("en") and "未知参数 'm'" in str(unknown.value)
    with pytest.raises(DagInvalid) as mistyped:
        bind_params(definition, {"n": "many"}, source="probe.yaml")
    assert "'n' should be integer" in mistyped.value.text("en")


def test_the_graph_as_text_mermaid_and_png(tmp_path: Path) -> None:
    definition = load_text(yaml.safe_dump(GOOD), source="probe.yaml", registry=REGISTRY)
    assert graph.layers(definition) == [["first"], ["second"], ["third"]]
    drawn = graph.text(definition)
    assert "second [testing.count] ← first" in drawn and "when {{ steps.second.result > 1 }}" in drawn
    chart = graph.mermaid(definition)
    assert chart.startswith("flowchart LR") and "first --> second" in chart and "second -.->|when| third" in chart
    image = graph.png(definition, tmp_path / "probe.png")
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_validate_exits_2_naming_the_file_the_step_and_the_fix(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from linli.cli import app

    monkeypatch.setenv("LINLI_LANGUAGE", "en")
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    settings = get_settings()
    broken = tmp_path / "report.yaml"
    text = (settings.dag.definitions_dir / "report.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("task: cases.assess", "task: cases.asess"), encoding="utf-8")
    runner = CliRunner()
    bad = runner.invoke(app, ["dag", "validate", str(broken)])
    assert bad.exit_code == 2
    assert str(broken) in bad.output and "step 'assess'" in bad.output and "cases.assess" in bad.output
    good = runner.invoke(app, ["dag", "validate"])
    assert good.exit_code == 0, good.output
    monkeypatch.setenv("LINLI_LANGUAGE", "zh")
    get_settings.cache_clear()
    zh = runner.invoke(app, ["dag", "validate", str(broken)])
    said = " ".join(zh.output.split())  # Rich wraps long lines
    assert zh.exit_code == 2 and "步骤 'assess'" in said and "未知任务 'cases.asess'" in said
    get_settings.cache_clear()


def test_trigger_params_must_name_a_param_and_read_only_the_trigger() -> None:
    issues = _issues({"top": {"trigger": {"events": ["linli.case.reported"],
                                          "params": {"case": "{{ trigger.payload.case_id }}",
                                                     "n": "{{ params.n }}"}}}})
    assert any("trigger.params sets 'case', which is not a parameter" in i for i in issues)
    assert any("trigger.params.n may only read the trigger" in i for i in issues)
