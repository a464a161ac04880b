"""Whole-file checks: state typing, outputs, templates, conditions, tools and edges.

They run on a structurally valid :class:`WorkflowConfig` (possibly with broken items removed, see
:class:`Known`) and report :class:`Issue` objects; graph shape is checked in :mod:`.graph_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .condition_checks import condition_problem
from .diagnostics import closest
from .durable_checks import check_durable
from .issues import Found, Loc
from .mcp_servers import is_mcp_tool, mcp_server_names_issues, mcp_tool_issue
from .memory import check_memory
from .schema import END, IDENTIFIER, START, Node, WorkflowConfig
from .scope import Scope
from .state import StateField, schema_mismatch
from .templates import TemplateError, parse_template
from .tool_modules import allowed_modules_issues, custom_tool_issue
from .tool_settings import BUILTIN_TOOL_CONFIGS, tool_config_issues
from .types import ANY, TypeExpr

__all__ = ["BUILTIN_TOOLS", "RESERVED_NAMES", "Known", "check_workflow"]

BUILTIN_TOOLS = tuple(BUILTIN_TOOL_CONFIGS)
"""Tools every workflow may name (their settings are in :mod:`.tool_settings`);
custom ones are written `module:function`."""

RESERVED_NAMES = ("state", "item", "item_index")
"""Names templates give a meaning of their own, so state fields cannot take them."""

_PARALLEL_NAMES = {"item": ANY, "item_index": TypeExpr("int")}


@dataclass
class Known:
    """What was in the file but failed structural validation and was left out of the checks.

    Attributes:
        node_ids: Ids of left-out nodes (edges may still name them).
        unnamed_nodes: A left-out node had no usable id, so an edge naming an unknown node may
            mean it.
        fields: State fields declared or written by left-out items (types unknown).
        fan_out_targets: Targets of left-out `parallel` edges (their templates see `{item}`).
        incomplete: Something structural was left out, so whole-graph checks would mislead.
        mcp_servers: Names of left-out MCP servers (tools may still name them).
    """

    node_ids: set[str] = field(default_factory=set)
    unnamed_nodes: bool = False
    fields: set[str] = field(default_factory=set)
    fan_out_targets: set[str] = field(default_factory=set)
    incomplete: bool = False
    mcp_servers: set[str] = field(default_factory=set)


@dataclass
class Checked:
    """Result of :func:`check_workflow`."""

    fields: dict[str, StateField]
    implicit: list[str]
    found: Found
    endpoints_ok: bool


def check_workflow(
    config: WorkflowConfig,
    known: Known,
    sub_outputs: dict[int, list[tuple[str, StateField, Loc]]] | None = None,
) -> Checked:
    """Run every whole-file check except graph shape. ``sub_outputs`` gives the outputs of
    workflow nodes (by node index) with the types their sub-workflows give them
    (:meth:`.subworkflows.Children.output_types`)."""
    return _Checker(config, known, sub_outputs or {}).run()


class _Checker:
    def __init__(
        self,
        config: WorkflowConfig,
        known: Known,
        sub_outputs: dict[int, list[tuple[str, StateField, Loc]]],
    ) -> None:
        self.config = config
        self.known = known
        self.sub_outputs = sub_outputs
        self.found = Found()
        self.fields: dict[str, StateField] = dict(config.state.fields)
        self.implicit: list[str] = []
        self.writer: dict[str, str] = {}
        self.node_ids = {node.id for node in config.nodes} | known.node_ids
        self.parallel_targets = {
            e.parallel.target_node for e in config.edges if e.parallel is not None
        } | known.fan_out_targets
        self.endpoints_ok = True
        if any(e.parallel and e.parallel.target_node not in self.node_ids for e in config.edges):
            # the fan-out names no node, so which node sees {item} is unknown: do not guess
            known.fields.update(_PARALLEL_NAMES)
        self.scope = Scope(self.fields, known.fields)

    def add(self, loc: Loc, message: str, **extra: object) -> None:
        self.found.add(loc, message, **extra)

    def run(self) -> Checked:
        self._state_names()
        self._node_ids()
        for index, node in enumerate(self.config.nodes):
            self._outputs(index, node)
        self._parallel_collect_fields()
        self.found.issues += allowed_modules_issues(self.config.config.tools.allowed_modules)
        self.found.issues += mcp_server_names_issues(self.config.config.tools.mcp_servers)
        for index, node in enumerate(self.config.nodes):
            self._templates(index, node)
            self._tools(index, node)
        for index in range(len(self.config.edges)):
            self._edge(index)
        self.found.issues += check_durable(self.config)
        self.found.issues += check_memory(self.config)
        return Checked(self.fields, self.implicit, self.found, self.endpoints_ok)

    # -- state and nodes -------------------------------------------------------------------

    def _state_names(self) -> None:
        for name in self.config.state.fields:
            loc: Loc = ("state", "fields", name)
            if not IDENTIFIER.match(name):
                self.add(loc, f"field name {name!r} must be an identifier", at_key=True)
            elif name in RESERVED_NAMES:
                self.add(loc, f"{name!r} is reserved in templates; rename the field", at_key=True)

    def _node_ids(self) -> None:
        first: dict[str, int] = {}
        for index, node in enumerate(self.config.nodes):
            if node.id in first:
                self.add(
                    ("nodes", index, "id"),
                    f"duplicate node id {node.id!r} (also nodes[{first[node.id]}])",
                    code="duplicate_node",
                )
            else:
                first[node.id] = index

    def _output_types(self, index: int, node: Node) -> list[tuple[str, StateField, Loc]]:
        """(output name, its type as a field, where its type is written) for each output."""
        schema = node.output_schema
        base: Loc = ("nodes", index)
        if node.type == "workflow":  # typed by its sub-workflow's fields
            return self.sub_outputs.get(index, [])
        if schema is None:
            result = []
            for k, name in enumerate(node.outputs):
                declared = self.fields.get(name) or StateField(type="str")
                result.append((name, declared, (*base, "outputs", k)))
            return result
        if schema.type != "object":
            if len(node.outputs) != 1:
                self.add(
                    (*base, "outputs"),
                    f"output_schema of type {schema.type} gives one value; list exactly one "
                    f"output, not {len(node.outputs)}",
                )
                return []
            spec = StateField(type=schema.type, description=schema.description)
            return [(node.outputs[0], spec, (*base, "output_schema", "type"))]
        by_name = {f.name: (j, f) for j, f in enumerate(schema.fields or [])}
        missing = [name for name in node.outputs if name not in by_name]
        unlisted = [name for name in by_name if name not in node.outputs]
        matched: set[str] = set()
        for name in missing:
            guess = closest(name, [u for u in unlisted if u not in matched])
            if guess:
                matched.add(guess)
            k = node.outputs.index(name)
            self.known.fields.add(name)
            self.add(
                (*base, "outputs", k),
                f"output {name!r} has no field in output_schema.fields",
                suggestion=guess,
                code="output_mismatch",
            )
        for name in unlisted:
            if name not in matched:
                j = by_name[name][0]
                self.add(
                    (*base, "output_schema", "fields", j, "name"),
                    f"output_schema field {name!r} is not listed in outputs",
                    code="output_mismatch",
                )
        result = []
        for name in node.outputs:
            if name in by_name:
                j, f = by_name[name]
                spec = StateField.model_construct(
                    type=f.type, description=f.description, schema_=f.schema_
                )
                result.append((name, spec, (*base, "output_schema", "fields", j, "type")))
        return result

    def _outputs(self, index: int, node: Node) -> None:
        seen: set[str] = set()
        for k, name in enumerate(node.outputs):
            loc: Loc = ("nodes", index, "outputs", node.output_key(k))
            if name in seen:
                self.add(loc, f"output {name!r} is listed twice")
            seen.add(name)
            if not IDENTIFIER.match(name) or name in RESERVED_NAMES:
                self.add(loc, f"{name!r} cannot be a state field name")
        for name, spec, loc in self._output_types(index, node):
            target = self.fields.get(name)
            if target is None and name in self.known.fields:
                continue  # its declaration was left out: its type is unknown
            if target is None:
                self.fields[name] = spec
                self.implicit.append(name)
                self.writer[name] = node.id
            else:
                problem = schema_mismatch(target, spec)
                if problem is None:
                    continue
                if name in self.writer:
                    where = f"as node {self.writer[name]!r} writes it"
                else:
                    where = f"as state field {name!r} declares it"
                self.add(loc, f"output {name!r} {problem} {where}", code="type_mismatch")

    def _parallel_collect_fields(self) -> None:
        nodes = {node.id: node for node in self.config.nodes}
        for index, edge in enumerate(self.config.edges):
            spec = edge.parallel
            if spec is None:
                continue
            if spec.target_node not in nodes:
                self.known.fields.add(spec.collect_field)  # the target was left out or is unknown
                continue
            loc: Loc = ("edges", index, "parallel")
            target = nodes[spec.target_node]
            if len(target.outputs) != 1:
                self.known.fields.add(spec.collect_field)
                self.add(
                    (*loc, "target_node"),
                    f"fan-out target {target.id!r} must have exactly one output to collect, "
                    f"not {len(target.outputs)}",
                )
                continue
            out = self.fields.get(target.outputs[0])
            item_type = out.type_expr if out else ANY
            collected = self.fields.get(spec.collect_field)
            name = spec.collect_field
            if not IDENTIFIER.match(name) or name in RESERVED_NAMES:
                self.add((*loc, "collect_field"), f"{name!r} cannot be a state field name")
                self.known.fields.add(name)
                continue
            if collected is None and spec.collect_field not in self.known.fields:
                # an output whose type is unknown (its declaration was left out) makes a plain list
                collected_type = "list" if item_type.kind == "any" else f"list[{item_type}]"
                self.fields[spec.collect_field] = StateField(type=collected_type)
                self.implicit.append(spec.collect_field)
            elif collected is not None and not collected.type_expr.accepts(
                TypeExpr("list", (item_type,))
            ):
                self.add(
                    (*loc, "collect_field"),
                    f"collect_field {spec.collect_field!r} is {collected.type}; it must be a "
                    f"list of {item_type}",
                    code="type_mismatch",
                )

    # -- templates and tools ---------------------------------------------------------------

    def _templates(self, index: int, node: Node) -> None:
        extra = dict(_PARALLEL_NAMES) if node.id in self.parallel_targets else {}
        local = {name: TypeExpr("str") for name in node.inputs}
        for name, template in node.inputs.items():
            if not IDENTIFIER.match(name) or name in RESERVED_NAMES:
                message = f"input name {name!r} must be an identifier usable as {{{name}}}"
                self.add(("nodes", index, "inputs", name), message, at_key=True)
            self._template(("nodes", index, "inputs", name), template, extra)
        if node.prompt_text is not None:  # a registry prompt is checked once fetched (--resolve)
            self._template(("nodes", index, "prompt"), node.prompt_text, {**extra, **local})

    def _template(self, loc: Loc, template: str, extra: dict[str, TypeExpr]) -> None:
        try:
            parts = parse_template(template)
        except TemplateError as exc:
            needle, nth = _needle(template, exc.offset, exc.offset + 1)
            self.add(loc, str(exc), needle=needle, nth=nth, code="template")
            return
        for part in parts:
            if isinstance(part, str):
                continue
            problem, suggestion = self.scope.resolve(part.path, extra)
            if problem:
                needle, nth = _needle(template, part.offset, template.index("}", part.offset) + 1)
                self.add(
                    loc,
                    f"placeholder {{{part.text}}}: {problem}",
                    suggestion=suggestion,
                    needle=needle,
                    nth=nth,
                    code="template",
                )

    def _tools(self, index: int, node: Node) -> None:
        allowed = self.config.config.tools.allowed_modules
        servers = {**self.config.config.tools.mcp_servers, **dict.fromkeys(self.known.mcp_servers)}
        for k, ref in enumerate(node.tool_refs):
            loc: Loc = ("nodes", index, "tools", k)
            if is_mcp_tool(ref.name):  # mcp:SERVER/TOOL; whether TOOL exists: --resolve
                if issue := mcp_tool_issue(ref.name, servers):
                    self.found.issues.append(replace(issue, loc=loc))
            elif ":" in ref.name:
                if issue := custom_tool_issue(ref.name, allowed):
                    self.found.issues.append(replace(issue, loc=loc))
            elif ref.name not in BUILTIN_TOOLS:
                self.add(
                    loc,
                    f"unknown tool {ref.name!r}; built-in tools are {', '.join(BUILTIN_TOOLS)}, "
                    "custom tools are written module:function",
                    suggestion=closest(ref.name, BUILTIN_TOOLS),
                    code="tool",
                )
            else:
                for issue in tool_config_issues(ref.name, ref.config):
                    self.found.issues.append(replace(issue, loc=(*loc, "config", *issue.loc)))

    # -- edges -----------------------------------------------------------------------------

    def _endpoint(self, loc: Loc, name: str, *, source: bool) -> None:
        if source and name == END:
            self.add(loc, "no edge can leave END")
        elif not source and name == START:
            self.add(loc, "no edge can lead to START")
        elif name not in self.node_ids and name not in (START, END):
            if self.known.unnamed_nodes:
                self.endpoints_ok = False
                return  # it may be the node whose id is missing, already reported
            options = [*self.node_ids, START if source else END]
            self.add(loc, f"unknown node {name!r}", suggestion=closest(name, options))
        else:
            return
        self.endpoints_ok = False

    def _edge(self, index: int) -> None:
        edge = self.config.edges[index]
        loc: Loc = ("edges", index)
        self._endpoint((*loc, "from"), edge.from_, source=True)
        if edge.routes is not None:
            self._routes(loc, edge.routes)
        elif edge.loop is not None:
            self._endpoint((*loc, "loop", "exit_to"), edge.loop.exit_to, source=False)
            if edge.loop.exit_to == edge.from_:
                self.add(
                    (*loc, "loop", "exit_to"),
                    f"the loop of {edge.from_!r} must exit to another node or END",
                )
                self.endpoints_ok = False  # the graph would look trapped; this is the cause
            self._typed_field((*loc, "loop", "condition_field"), edge.loop.condition_field, "bool")
            if edge.from_ == START:
                self.add((*loc, "from"), "a loop repeats a node; it cannot start at START")
        elif edge.parallel is not None:
            spec = edge.parallel
            if spec.target_node in (START, END):
                self.add((*loc, "parallel", "target_node"), "a fan-out target must be a node")
                self.endpoints_ok = False
            else:
                self._endpoint((*loc, "parallel", "target_node"), spec.target_node, source=False)
            self._typed_field((*loc, "parallel", "items_field"), spec.items_field, "list")
        elif isinstance(edge.to, list):
            for k, name in enumerate(edge.to):
                self._endpoint((*loc, "to", k), name, source=False)
        else:
            self._endpoint((*loc, "to"), edge.targets[0], source=False)

    def _typed_field(self, loc: Loc, name: str, kind: str) -> None:
        if name in self.known.fields and name not in self.fields:
            return
        spec = self.fields.get(name)
        if spec is None:
            self.add(loc, f"no state field {name!r}", suggestion=closest(name, self.fields))
        elif spec.type_expr.kind not in (kind, "any"):
            self.add(loc, f"field {name!r} is {spec.type}; it must be {kind}", code="type_mismatch")

    def _routes(self, loc: Loc, routes: list) -> None:
        defaults = [k for k, route in enumerate(routes) if route.is_default]
        if not defaults:
            self.add(
                (*loc, "routes"),
                "routes need a default route ({condition: default, to: ...}) so that a branch "
                "is always taken",
            )
        elif len(defaults) > 1:
            self.add(
                (*loc, "routes", defaults[1], "condition"), "only one route may be the default"
            )
        elif defaults[0] != len(routes) - 1:
            self.add(
                (*loc, "routes", defaults[0] + 1),
                "routes after the default can never be taken; put the default last",
            )
        for k, route in enumerate(routes):
            self._endpoint((*loc, "routes", k, "to"), route.to, source=False)
            if not route.is_default:
                self._condition((*loc, "routes", k, "condition"), route.expression)

    def _condition(self, loc: Loc, text: str) -> None:
        problem = condition_problem(text, self.scope)
        if problem is not None:
            message, suggestion = problem
            self.add(loc, f"condition {text!r}{message}", suggestion=suggestion, code="condition")


def _needle(template: str, start: int, end: int) -> tuple[str, int]:
    """The text at ``template[start:end]`` and how many times it occurs before ``start``, so that
    its own occurrence can be found in the source."""
    needle = template[start:end]
    return needle, template[:start].count(needle)
