"""The low-code layer: governance processes as DAGs in YAML, built from registered tasks.

- `model`: the definition format (pydantic) — name, params, schedule, trigger, steps.
- `registry`: tasks register under dotted names with typed parameters.
- `expressions`: `{{ … }}` rendered in a sandboxed Jinja2 environment.
- `validate`: every check a definition must pass, with errors naming file, step and fix.
- `plan`: what the runner needs at run time (binding params, when:, arguments), Prefect-free.
- `graph`: the DAG as text, Mermaid or a PNG.
- `sources`: shipped files, admin overrides and which one runs.
"""

from linli.dag.model import DagDefinition, Param, Schedule, Step, Trigger
from linli.dag.validate import DagInvalid, DagIssue

__all__ = ["DagDefinition", "DagInvalid", "DagIssue", "Param", "Schedule", "Step", "Trigger"]
