"""The workflow language v1.0: the models a workflow file is validated against.

Each model checks what it can see alone; checks that span the whole file (edges naming nodes,
template placeholders, graph shape ...) live in :mod:`configurable_agents.config.checks`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ._model import ConfigModel, by_shape
from .evaluation import EvaluationConfig
from .memory import NodeMemory
from .prompt_refs import PromptRef, parse_prompt_uri
from .settings import Config, LLMConfig
from .state import SchemaEntry, StateSchema, TypeName, check_schema_present
from .types import TypeExpr, parse_type

__all__ = [
    "END",
    "START",
    "Edge",
    "Flow",
    "LoopSpec",
    "Node",
    "OutputField",
    "OutputSchema",
    "ParallelSpec",
    "Route",
    "ToolRef",
    "WorkflowConfig",
]

START = "START"
END = "END"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _identifier(value: str, what: str) -> str:
    if not IDENTIFIER.match(value):
        message = (
            f"{what} must be an identifier (letters, digits and _, not starting with a digit), "
            f"not {value!r}"
        )
        raise PydanticCustomError("not_identifier", message.replace("{", "{{").replace("}", "}}"))
    return value


class Flow(ConfigModel):
    """What the workflow is."""

    name: str
    """Workflow name; names traces, runs and reports."""

    description: str | None = None
    """What the workflow does."""

    version: str | None = Field(default=None, coerce_numbers_to_str=True, strict=False)
    """Version of the workflow, e.g. `1.0.0`."""

    tags: list[str] = []
    """Labels for finding the workflow's runs."""


class OutputField(ConfigModel):
    """One field of a node's structured output."""

    name: str
    """Output name; must be listed in the node's `outputs`."""

    type: TypeName
    """Type of the value, as for state fields."""

    description: str | None = None
    """What the model should put there; sent to the model with the schema."""

    schema_: dict[str, SchemaEntry] | None = Field(
        default=None, alias="schema", validate_default=True
    )
    """Fields of an `object` type, nested to any depth."""

    @field_validator("schema_")
    @classmethod
    def _check_schema(cls, value: dict[str, Any] | None, info: ValidationInfo) -> Any:
        return check_schema_present(info.data.get("type"), value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _identifier(value, "an output name")

    @property
    def type_expr(self) -> TypeExpr:
        """The parsed ``type``."""
        return parse_type(self.type)


class OutputSchema(ConfigModel):
    """Shape of a node's structured output: an object with named fields, or one simple type whose
    value goes to the node's single output."""

    type: TypeName = "object"
    """`object` with `fields`, or a simple type such as `str` or `list[str]`."""

    fields: list[OutputField] | None = None
    """The object's fields (only with `type: object`)."""

    description: str | None = None
    """What the output holds."""

    @model_validator(mode="after")
    def _fields_match_type(self) -> OutputSchema:
        if self.type == "object" and not self.fields:
            raise PydanticCustomError("missing_fields", "an `object` output_schema needs `fields`")
        if self.type != "object" and self.fields is not None:
            raise PydanticCustomError(
                "unexpected_fields", "`fields` is only allowed with `type: object`"
            )
        if self.type != "object" and parse_type(self.type).contains_object():
            raise PydanticCustomError(
                "missing_schema",
                f"a {self.type} output needs field schemas: use `type: object` with `fields`",
            )
        return self


class ToolRef(ConfigModel):
    """A tool a node may call, with its settings."""

    name: str
    """Built-in tool name (`web_search`, `http_get`, `read_file`, `write_file`, `calculator`
    ...), a custom tool as `module:function`, or a tool of an MCP server declared in
    `config.tools.mcp_servers` as `mcp:SERVER/TOOL`."""

    config: dict[str, Any] = {}
    """Settings passed to the tool."""

    on_error: Literal["continue", "fail"] = "fail"
    """`fail` stops the node when the tool fails; `continue` hands the error to the model."""


if TYPE_CHECKING:  # what the unions below hold, for type checkers
    ToolEntry = str | ToolRef
    NodeTargets = str | list[str]
    PromptEntry = str | PromptRef
    NodeOutputs = list[str] | dict[str, str]
else:
    PromptEntry = by_shape(
        "expected a prompt template or a registry reference {name, version | alias}",
        text=str,
        mapping=PromptRef,
    )
    ToolEntry = by_shape("expected a tool name or a tool mapping", text=str, mapping=ToolRef)
    NodeTargets = by_shape(
        "expected a node id or a list of node ids",
        text=str,
        list=Annotated[list[str], Field(min_length=1)],
    )
    NodeOutputs = by_shape(
        "expected a list of state fields, or (a workflow node) a mapping {sub-workflow field: "
        "state field}",
        list=Annotated[list[str], Field(min_length=1)],
        mapping=Annotated[dict[str, str], Field(min_length=1)],
    )

NodeType = Literal["llm", "human", "workflow"]
"""What answers a node: a model, a person, or another workflow file."""


class Node(ConfigModel):
    """A step of the workflow: a prompt sent to a model, whose structured reply is written to
    state; with `type: human`, a question to a person, whose answer is written to state; or, with
    `workflow: FILE`, another workflow run inside this one, whose fields are written to state."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["prompt"]},
                {"required": ["workflow"]},
                {"required": ["type"], "properties": {"type": {"const": "workflow"}}},
            ]
        }
    )

    id: str
    """Unique identifier, used by edges."""

    type: NodeType = "llm"
    """`llm`: a model answers. `human`: the run pauses with status `waiting` until a person
    gives the `outputs` (`resume`, or `POST /runs/{id}/resume`); the prompt is what they are
    shown and `timeout` how long they have. `workflow`: the node runs the workflow file named by
    `workflow` (implied by that key)."""

    workflow: str | None = None
    """A workflow file (path relative to this file) the node runs as a sub-workflow, as part of
    this run: `inputs` fill its input fields, `outputs` say which of its fields are written to
    which of this workflow's. Implies `type: workflow`; such a node has no `prompt`, `tools`,
    `llm`, `output_schema`, `max_retries`, `max_tool_calls` or `timeout`."""

    name: str | None = None
    """Display label, shown in traces and the live view (the `id` stays the node's identity)."""

    description: str | None = None
    """What the node does."""

    interrupt_before: bool = False
    """Pause the run with status `waiting` before this node runs, for a person to approve it
    (resume with no inputs)."""

    prompt: PromptEntry | None = None
    """Prompt template (required, except on a workflow node): `{field}`, `{state.field}`,
    `{state.obj.sub}` and `inputs` names are replaced; `{{` and `}}` are literal braces. Or a
    prompt of MLflow's prompt registry: `prompts:/NAME/VERSION`, `prompts:/NAME@ALIAS`, or
    `{name: ..., version: ...}` / `{name: ..., alias: ...}` (its `{{field}}` placeholders read
    the same state)."""

    inputs: dict[str, str] = {}
    """Local name -> template, usable as `{name}` in the prompt. On a workflow node: the
    sub-workflow's input field -> template over this workflow's state (a template that is a
    single placeholder, `"{state.tickets}"`, passes the value with its type; any other renders
    as text)."""

    outputs_: NodeOutputs = Field(alias="outputs")
    """State fields the node writes. On a workflow node, the sub-workflow's fields written
    to this workflow's state: a list (same names here and there) or a mapping
    `{sub-workflow field: state field}`."""

    output_schema: OutputSchema | None = None
    """Type of the outputs. Without it, each output has the type its state field declares
    (`str` for undeclared ones)."""

    tools: list[ToolEntry] = []
    """Tools the model may call before it answers."""

    max_tool_calls: int = Field(default=10, ge=0)
    """Most tool calls the model may make in one execution of the node before it must answer."""

    llm: LLMConfig | None = None
    """Overrides of `config.llm` for this node, field by field."""

    max_retries: int | None = Field(default=None, ge=0)
    """Overrides `config.execution.max_retries` for this node."""

    timeout: float | None = Field(default=None, gt=0)
    """Seconds one model call of this node may take; overrides `config.llm.timeout`. For a
    `human` node: seconds the person has to answer, after which the run ends with status
    `timeout`."""

    memory: NodeMemory | None = None
    """Memory as the agent tool this one replaces wrote it: with memory, the fields this node
    writes are kept from one run of a session to the next (`scope: session`)."""

    @model_validator(mode="wrap")
    @classmethod
    def _kind(cls, data: Any, handler: Any) -> Any:
        """`workflow: FILE` implies `type: workflow`; any other node needs a `prompt` (reported
        as a missing key, with the node's other errors)."""
        if isinstance(data, dict):
            if "workflow" in data and "type" not in data:
                data = {**data, "type": "workflow"}
            workflow = "workflow" in data or data.get("type") == "workflow"
            if cls is Node and "prompt" not in data and not workflow:
                _PromptNode.model_validate(data)  # raises, with pydantic's own errors
        return handler(data)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if value in (START, END):
            raise PydanticCustomError(
                "reserved_id", f"'{value}' is reserved for edges; choose another node id"
            )
        return _identifier(value, "a node id")

    @field_validator("prompt")
    @classmethod
    def _prompt_uri(cls, value: str | PromptRef | None) -> str | PromptRef | None:
        if isinstance(value, str):
            try:
                parse_prompt_uri(value)
            except ValueError as exc:
                raise PydanticCustomError("prompt_ref", "{e}", {"e": str(exc)}) from None
        return value

    @property
    def prompt_ref(self) -> PromptRef | None:
        """The registry prompt this node uses, if its prompt is a reference."""
        if isinstance(self.prompt, PromptRef):
            return self.prompt
        return None if self.prompt is None else parse_prompt_uri(self.prompt)

    @property
    def prompt_text(self) -> str | None:
        """The inline prompt template, or None when it is a registry reference (or the node, a
        workflow node, has no prompt)."""
        if self.prompt is None or self.prompt_ref is not None:
            return None
        return str(self.prompt)

    @property
    def outputs(self) -> list[str]:
        """The state fields the node writes (on a workflow node written as a mapping, its
        values)."""
        if isinstance(self.outputs_, dict):
            return list(self.outputs_.values())
        return list(self.outputs_)

    @property
    def output_map(self) -> dict[str, str]:
        """Sub-workflow field -> state field it is written to (a list maps each name to
        itself)."""
        if isinstance(self.outputs_, dict):
            return dict(self.outputs_)
        return {name: name for name in self.outputs_}

    def output_key(self, k: int) -> str | int:
        """Where the ``k``-th output is written in the file: its index in a list, or its
        sub-workflow field in a mapping."""
        if isinstance(self.outputs_, dict):
            return list(self.outputs_)[k]
        return k

    @property
    def tool_refs(self) -> list[ToolRef]:
        """``tools`` with bare names turned into :class:`ToolRef`."""
        return [ToolRef(name=t) if isinstance(t, str) else t for t in self.tools]


class _PromptNode(Node):
    """A node that is not a workflow node, validated only to report its missing `prompt` with
    pydantic's own error (see :meth:`Node._kind`)."""

    prompt: PromptEntry


class ConditionLogic(ConfigModel):
    """The older way of writing a route condition: `{logic: "<expression>"}`."""

    logic: str
    """The condition expression, or `default`."""


class Route(ConfigModel):
    """One branch of a conditional edge."""

    condition: by_shape(  # type: ignore[valid-type]
        "expected an expression string or {logic: ...}", text=str, mapping=ConditionLogic
    )
    """Expression over state (`state.score >= 7 and not state.done`), or `default` for the
    fallback branch. `{logic: ...}` is also accepted."""

    to: str
    """Node (or `END`) to go to when the condition holds."""

    @property
    def expression(self) -> str:
        """The condition as a string, whichever way it was written."""
        return (
            self.condition.logic if isinstance(self.condition, ConditionLogic) else self.condition
        )

    @property
    def is_default(self) -> bool:
        """Whether this is the fallback branch."""
        return self.expression.strip() == "default"


class LoopSpec(ConfigModel):
    """Run the edge's `from` node again until a bool field is true or the cap is hit."""

    condition_field: str
    """Bool state field; the loop exits when it is true."""

    max_iterations: int = Field(default=10, ge=1)
    """Most times the node runs; the loop exits after that many, whatever the field says."""

    exit_to: str = END
    """Node (or `END`) to go to when the loop exits."""


class ParallelSpec(ConfigModel):
    """Run a node once per item of a list (fan-out) and collect the results (fan-in)."""

    items_field: str
    """List state field to iterate over."""

    target_node: str
    """Node to run per item; its templates see `{item}` and `{item_index}`. Its own outgoing
    edge continues once every item is done."""

    collect_field: str
    """List state field that receives the target's single output from each item, in item order."""


class Edge(ConfigModel):
    """A transition out of a node: exactly one of `to`, `routes`, `loop` or `parallel`."""

    from_: str = Field(alias="from")
    """Node the edge leaves, or `START`."""

    to: NodeTargets | None = None
    """Next node, `END`, or a list of nodes that then run concurrently."""

    routes: list[Route] | None = Field(default=None, min_length=1)
    """Branches tried in order; exactly one must be the `default`."""

    loop: LoopSpec | None = None
    """Repeat the `from` node."""

    parallel: ParallelSpec | None = None
    """Fan out over a list."""

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Edge:
        given = [k for k in ("to", "routes", "loop", "parallel") if getattr(self, k) is not None]
        if len(given) != 1:
            detail = "none is given" if not given else f"got {' and '.join(given)}"
            raise PydanticCustomError(
                "edge_kind",
                "an edge needs exactly one of to, routes, loop or parallel; {d}",
                {"d": detail},
            )
        return self

    @property
    def kind(self) -> Literal["to", "routes", "loop", "parallel"]:
        """Which kind of edge this is."""
        if self.routes is not None:
            return "routes"
        if self.loop is not None:
            return "loop"
        if self.parallel is not None:
            return "parallel"
        return "to"

    @property
    def targets(self) -> list[str]:
        """Every node (or `END`) the edge may lead to."""
        if self.routes is not None:
            return [route.to for route in self.routes]
        if self.loop is not None:
            return [self.from_, self.loop.exit_to]
        if self.parallel is not None:
            return [self.parallel.target_node]
        return [self.to] if isinstance(self.to, str) else list(self.to or [])


class WorkflowConfig(ConfigModel):
    """A workflow file."""

    schema_version: Literal["1.0"]
    """Version of the workflow language; `"1.0"`."""

    flow: Flow
    """Name and description of the workflow."""

    state: StateSchema = StateSchema()
    """Typed fields the nodes read and write."""

    nodes: list[Node] = Field(min_length=1)
    """The steps."""

    edges: list[Edge] = Field(min_length=1)
    """How control passes between nodes, from `START` to `END`."""

    config: Config = Config()
    """Models, limits, tools and observability."""

    evaluation: EvaluationConfig | None = None
    """How runs are scored (`configurable-agents eval`, online scoring in `serve`)."""
