"""The DAG as a reader sees it: topological order, layers, text, Mermaid and a PNG (Pillow, no Graphviz)."""

from __future__ import annotations

from pathlib import Path

from linli.dag.model import DagDefinition


def topological_order(definition: DagDefinition) -> list[str]:
    """Steps so that each comes after everything in its `after:` (file order among equals)."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(definition.steps)
    while remaining:
        ready = [name for name in remaining if set(definition.steps[name].after) <= placed]
        if not ready:  # validation refuses cycles; be safe anyway
            raise ValueError("the steps depend on each other in a cycle")
        order += ready
        placed |= set(ready)
        remaining = [name for name in remaining if name not in placed]
    return order


def layers(definition: DagDefinition) -> list[list[str]]:
    """Steps grouped by depth: layer 0 has no upstream, layer n waits for something in layer n-1."""
    depth: dict[str, int] = {}
    for name in topological_order(definition):
        depth[name] = 1 + max((depth[parent] for parent in definition.steps[name].after), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name, level in depth.items():
        out[level].append(name)
    return out


def describe_timing(definition: DagDefinition) -> tuple[str, str]:
    """The schedule and the trigger in a few words ('' when there is none)."""
    schedule = ""
    if definition.schedule is not None:
        s = definition.schedule
        schedule = f"cron {s.cron} ({s.timezone})" if s.cron else f"every {s.interval_seconds:g} s"
    trigger = ""
    if definition.trigger is not None:
        trigger = ", ".join(definition.trigger.events)
        if definition.trigger.payload:
            trigger += " where " + ", ".join(f"{k}={v}" for k, v in definition.trigger.payload.items())
    return schedule, trigger


def text(definition: DagDefinition) -> str:
    """A plain-text picture: one line per step, by layer, with its task, upstream and condition."""
    schedule, trigger = describe_timing(definition)
    lines = [f"{definition.name}: {definition.description.strip()}".rstrip(": ")]
    if schedule:
        lines.append(f"  schedule: {schedule}")
    if trigger:
        lines.append(f"  trigger:  {trigger}")
    for level, names in enumerate(layers(definition)):
        for name in names:
            step = definition.steps[name]
            line = f"  {'│  ' * level}└─ {name} [{step.task}]"
            if step.after:
                line += f" ← {', '.join(step.after)}"
            if step.when:
                line += f"  when {step.when}"
            lines.append(line)
    return "\n".join(lines)


def _mermaid_label(value: str) -> str:
    return value.replace('"', "'")


def mermaid(definition: DagDefinition) -> str:
    """A Mermaid flowchart; a conditional step's incoming edges are dotted and labelled 'when'."""
    lines = ["flowchart LR"]
    for name, step in definition.steps.items():
        lines.append(f'    {name}["{_mermaid_label(name)}<br/><small>{_mermaid_label(step.task)}</small>"]')
    for name, step in definition.steps.items():
        for parent in step.after:
            lines.append(f"    {parent} -.->|when| {name}" if step.when else f"    {parent} --> {name}")
    return "\n".join(lines)


def dot(definition: DagDefinition, *, errors: set[str] | frozenset[str] = frozenset()) -> str:
    """Graphviz DOT (the dashboard draws it in the browser); steps in `errors` are outlined red."""
    lines = ["digraph dag {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="sans-serif"];']
    for name, step in definition.steps.items():
        fill = "#fff7e0" if step.when else "#e8f1ff"
        color = ', color="#d00000", penwidth=2' if name in errors else ""
        lines.append(f'  "{name}" [label="{name}\\n{step.task}", fillcolor="{fill}"{color}];')
    for name, step in definition.steps.items():
        for parent in step.after:
            style = ' [style=dashed, label="when"]' if step.when else ""
            lines.append(f'  "{parent}" -> "{name}"{style};')
    lines.append("}")
    return "\n".join(lines)


def png(definition: DagDefinition, path: Path) -> Path:
    """Draw the DAG left to right into a PNG with Pillow (no system packages needed)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    box_w, box_h, gap_x, gap_y, margin = 220, 54, 70, 26, 24
    columns = layers(definition)
    tallest = max(len(column) for column in columns)
    width = margin * 2 + len(columns) * box_w + (len(columns) - 1) * gap_x
    height = margin * 2 + tallest * box_h + (tallest - 1) * gap_y + 24
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 6), definition.name, fill="black", font=font)
    where: dict[str, tuple[int, int]] = {}
    for x_index, column in enumerate(columns):
        for y_index, name in enumerate(column):
            where[name] = (margin + x_index * (box_w + gap_x), margin + 24 + y_index * (box_h + gap_y))
    for name, step in definition.steps.items():
        x, y = where[name]
        for parent in step.after:
            px, py = where[parent]
            start, end = (px + box_w, py + box_h // 2), (x, y + box_h // 2)
            draw.line([start, end], fill="gray" if step.when else "black", width=2)
            draw.polygon([end, (end[0] - 8, end[1] - 5), (end[0] - 8, end[1] + 5)], fill="black")
    for name, step in definition.steps.items():
        x, y = where[name]
        draw.rounded_rectangle([x, y, x + box_w, y + box_h], radius=8, outline="black",
                               fill="#fff7e0" if step.when else "#e8f1ff", width=2)
        draw.text((x + 10, y + 8), name, fill="black", font=font)
        draw.text((x + 10, y + 28), step.task + ("  (when)" if step.when else ""), fill="#444444", font=font)
    path = Path(path)
    image.save(path, format="PNG")
    return path
