"""A workflow as a Mermaid flowchart, with routes, loops and fan-outs labelled."""

from __future__ import annotations

from .schema import END, START, WorkflowConfig

__all__ = ["to_mermaid"]


def _id(name: str) -> str:
    if name == START:
        return "__start__"
    if name == END:
        return "__end__"
    return f"n_{name}"


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("\n", " ") + '"'


def to_mermaid(config: WorkflowConfig) -> str:
    """Render the workflow as a ``flowchart TD`` Mermaid diagram."""
    lines = ["flowchart TD", "    __start__([START])", "    __end__([END])"]
    for node in config.nodes:
        lines.append(f"    {_id(node.id)}[{_label(node.id)}]")
    for edge in config.edges:
        source = _id(edge.from_)
        if edge.routes is not None:
            for route in edge.routes:
                label = "default" if route.is_default else route.expression
                lines.append(f"    {source} -->|{_label(label)}| {_id(route.to)}")
        elif edge.loop is not None:
            loop = edge.loop
            label = f"loop until {loop.condition_field}, max {loop.max_iterations}"
            lines.append(f"    {source} -->|{_label(label)}| {source}")
            lines.append(f"    {source} -->|{_label('loop exit')}| {_id(loop.exit_to)}")
        elif edge.parallel is not None:
            spec = edge.parallel
            label = f"for each item in {spec.items_field} -> {spec.collect_field}"
            lines.append(f"    {source} ==>|{_label(label)}| {_id(spec.target_node)}")
        else:
            for target in edge.targets:
                lines.append(f"    {source} --> {_id(target)}")
    return "\n".join(lines) + "\n"
