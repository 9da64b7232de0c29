"""The DAG-definition block: an admin's override (or new process) as YAML text, edited in the Prefect UI.

The block document's name is the DAG's name. A run reads it at its start, so an edit takes effect
on the next run without a deploy. Saving from Python (`linli dag override`) refuses YAML that does
not validate; the UI cannot run Linli's checks when it saves, so each run checks again: a version
that does not validate is refused with the validation errors (logged on the run and kept in the
block's `refused` field) and the last good version keeps running — or the shipped file, if there
never was one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import Field

from linli.dag.model import DagDefinition
from linli.dag.registry import TaskRegistry
from linli.dag.sources import Resolved, load_override, resolve

BLOCK_TYPE_SLUG = "linli-dag-definition"


class DagDefinitionBlock(Block):
    """A Linli DAG definition (YAML). Save it under the DAG's name to override a shipped process or add one."""

    _block_type_name = "Linli DAG definition"
    _block_type_slug = BLOCK_TYPE_SLUG
    _description = ("A governance process as YAML (see flows/dags/ for examples). The next run uses it; "
                    "a version that does not validate is refused and the last good one keeps running.")
    _documentation_url = "https://github.com/linli/linli#low-code-dags"  # type: ignore[assignment]

    yaml: str = Field(
        title="YAML definition",
        description="The DAG definition in YAML: name (= this block's name), params, schedule, trigger, steps. "
                    "Validate it first with `linli dag validate`.",
        json_schema_extra={"format": "textarea"})
    last_good_yaml: str = Field(
        default="", title="Last good version (kept by Linli)",
        description="The last version that validated (runs fall back to it). Leave as is.")
    refused: str = Field(
        default="", title="Refused (kept by Linli)", description="Why the current YAML was refused, if it was.")

    def check(self, name: str, registry: TaskRegistry) -> DagDefinition:
        """The definition in `yaml`, validated as an override named `name` (DagInvalid otherwise)."""
        return load_override(name, self.yaml, registry=registry)

    async def asave(self, name: str | None = None, overwrite: bool = False, client: Any = None) -> Any:
        """Save, refusing YAML that does not validate; the saved version becomes the last good one."""
        self._accept(name)
        return await super().asave(name=name, overwrite=overwrite, client=client)

    def save(self, name: str | None = None, overwrite: bool = False, client: Any = None) -> Any:  # type: ignore[override]
        """Save, refusing YAML that does not validate; the saved version becomes the last good one."""
        self._accept(name)
        return super().save(name=name, overwrite=overwrite, client=client)

    def _accept(self, name: str | None) -> None:
        from linli.dag.registry import load_task_modules
        from linli.settings import get_settings

        target = name or self._block_document_name
        if not target:
            raise ValueError("save the DAG-definition block under the DAG's name")
        self.check(target, load_task_modules(get_settings().dag.task_modules))
        self.last_good_yaml, self.refused = self.yaml, ""

    async def _store(self) -> None:
        """Write Linli's bookkeeping fields back without re-validating."""
        await Block.asave(self, name=self._block_document_name, overwrite=True)


async def load_block(name: str) -> DagDefinitionBlock | None:
    """The override block named `name`, or None when there is none."""
    try:
        return await DagDefinitionBlock.aload(name)
    except (ValueError, ObjectNotFound):
        return None


async def resolve_definition(name: str, *, folder: Path, registry: TaskRegistry, lang: str = "zh") -> Resolved:
    """The definition a run of `name` uses now: a valid override, else its last good version, else the file.

    Records on the block what happened, so the admin sees a refusal in the UI and the dashboard.
    """
    block = await load_block(name)
    resolved = resolve(name, folder=folder, override=block.yaml if block else None,
                       last_good=block.last_good_yaml if block else None, registry=registry)
    if block is not None:
        refused = resolved.refused.text(lang) if resolved.refused else ""
        last_good = block.yaml if resolved.refused is None else block.last_good_yaml
        if (refused, last_good) != (block.refused, block.last_good_yaml):
            block.refused, block.last_good_yaml = refused, last_good
            await block._store()
    return resolved


async def override_names() -> list[str]:
    """Names of every DAG-definition block (overrides and added processes)."""
    async with get_client() as client:
        try:
            documents = await client.read_block_documents_by_type(BLOCK_TYPE_SLUG)
        except (ObjectNotFound, httpx.HTTPStatusError):  # the type was never registered: no overrides
            return []
    return sorted(d.name for d in documents if d.name and not d.is_anonymous)
