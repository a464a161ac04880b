"""The ``config`` section: model defaults, execution limits, tools and observability."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from ._model import ConfigModel
from .mcp_servers import McpServerConfig
from .memory import MemoryConfig

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PROVIDER",
    "PROVIDERS",
    "CheckpointConfig",
    "Config",
    "ExecutionConfig",
    "LLMConfig",
    "MlflowConfig",
    "ObservabilityConfig",
    "OpenTelemetryConfig",
    "PrometheusConfig",
    "ToolsConfig",
]

Provider = Literal["google", "openai", "anthropic", "ollama", "mock"]
PROVIDERS: tuple[str, ...] = get_args(Provider)
"""Every LLM provider a workflow may name."""

DEFAULT_PROVIDER = "google"
DEFAULT_MODEL = "gemini-2.5-flash-lite"


class LLMConfig(ConfigModel):
    """Model settings. Under `config.llm` they apply to every node; under a node's `llm` they
    override the workflow's settings field by field. Unset fields inherit."""

    provider: Provider | None = None
    """LLM provider: `google`, `openai`, `anthropic`, `ollama`, or the offline `mock`.
    Default: `google`."""

    model: str | None = None
    """Model name as the provider spells it. Default: `gemini-2.5-flash-lite`."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature, 0 to 2. Default: the provider's."""

    max_tokens: int | None = Field(default=None, gt=0)
    """Most tokens the model may generate per call. Default: the provider's."""

    api_base: str | None = None
    """Base URL of the provider's API, for OpenAI-compatible servers (vLLM, LM Studio, a proxy)
    or a remote Ollama."""

    timeout: float | None = Field(default=None, gt=0)
    """Seconds one model call may take before it is abandoned and retried. Default: 60."""


class CheckpointConfig(ConfigModel):
    """Durable runs: state saved after every node execution, so a run can be resumed."""

    enabled: bool | None = None
    """Save a checkpoint after every node execution (each loop iteration and fan-out item
    included). Default: on when a node is `type: human` or has `interrupt_before: true` (they
    need it), else off."""

    store: str | None = None
    """Where checkpoints go: `sqlite:///PATH` (relative paths are relative to the working
    directory) or `postgresql://USER@HOST:PORT/DB`. Default: `$CONFIGURABLE_AGENTS_CHECKPOINTS`,
    else `sqlite:///checkpoints.db`, beside the default MLflow store."""

    @model_validator(mode="after")
    def _store_scheme(self) -> CheckpointConfig:
        if self.store is not None and not self.store.startswith(
            ("sqlite:///", "postgresql://", "postgres://")
        ):
            raise PydanticCustomError(
                "checkpoint_store",
                "store must be sqlite:///PATH or postgresql://..., not {store!r}",
                {"store": self.store},
            )
        return self


class ExecutionConfig(ConfigModel):
    """Limits on a whole run."""

    timeout: float | None = Field(default=None, gt=0)
    """Seconds the whole run may take; the run then stops with status `timeout`. Default: no
    limit."""

    max_retries: int = Field(default=3, ge=0)
    """Retries of a model call after a transient error or an invalid structured reply; a node's
    `max_retries` overrides it."""

    max_cost_usd: float | None = Field(default=None, gt=0)
    """Budget in US dollars; no model call starts once it would be exceeded (status
    `budget_exceeded`)."""

    max_tokens: int | None = Field(default=None, gt=0)
    """Budget in tokens (input plus output) for the whole run."""

    max_concurrency: int = Field(default=8, ge=1)
    """Most model calls in flight at once, e.g. across the items of a fan-out."""

    recursion_limit: int = Field(default=100, ge=1)
    """Most node executions in one run, loops included; a guard against runaway graphs."""

    checkpoints: CheckpointConfig = CheckpointConfig()
    """Checkpoints, for resuming failed, interrupted and waiting runs (`resume`)."""


class ToolsConfig(ConfigModel):
    """Settings shared by the tools nodes use."""

    allowed_modules: list[str] = []
    """Python modules custom tools (`module:function`) may be imported from, submodules included;
    a custom tool from any other module is an error. Only public functions defined in the module
    itself can be tools, not names it imports. `builtins`, `os`, `subprocess`, `sys`, `shutil`,
    `importlib`, `pickle`, `marshal`, `ctypes` and `socket` cannot be listed."""

    mcp_servers: dict[str, McpServerConfig] = {}
    """MCP servers whose tools nodes may call, by name: a node lists `mcp:NAME/TOOL`. Each is a
    program on stdio, `{command, args, env, cwd}`, or a streamable HTTP endpoint,
    `{url, headers}`, with a per-call `timeout` and a `connect_timeout` (seconds). A server a
    node names is started once when the workflow is prepared (its tools' arguments are the
    server's) and stopped with it. `${VAR}` in `args`, `env`, `url` and `headers` is read from
    the environment then (an unset variable is an error) and never recorded. See docs/TOOLS.md."""


class MlflowConfig(ConfigModel):
    """Tracing and run tracking in MLflow."""

    enabled: bool = False
    """Record every run in MLflow."""

    tracking_uri: str = "sqlite:///mlflow.db"
    """MLflow store: `sqlite:///...`, `http(s)://...`, `postgresql://...`, or `file://...` from
    older configs. When this key is absent, `MLFLOW_TRACKING_URI` wins over the default."""

    experiment_name: str = "configurable_agents"
    """Experiment that runs and traces are recorded under."""

    run_name: str | None = None
    """Template for the MLflow run name, with `{workflow_name}`, `{workflow_version}`,
    `{timestamp}` and `{run_id}`. Default: `{workflow_name}-{timestamp}`."""

    autolog_enabled: bool = False
    """Also record what LangChain reports during model and tool calls, as
    `mlflow.langchain.autolog()` would trace it (messages, invocation parameters, LangChain's
    token usage, chain, retriever and nested tool runs), in the run's own trace: each call's span
    takes on its LangChain run, keeping our usage and cost; nested runs become its children.
    Captured in the run's process without MLflow; only when the run is traced."""

    async_logging: bool = True
    """Write traces in the background so that runs never wait on the store."""

    request_runs: bool = False
    """`serve`, `worker` and `mcp`: also give each request its own MLflow run (params, metrics,
    artifacts) besides its trace. Off by default, as MLflow advises for production traffic: a run
    per request floods the experiment's runs ("Evaluation runs" in the UI) and costs the writer
    about three quarters of its trace rate. `run` always records an MLflow run; a `batch` one parent
    run."""

    log_prompts: bool = True
    """Record rendered prompts and model replies on spans."""

    log_artifacts: bool = True
    """Attach artifacts (`cost_summary.json` and more, see `artifact_level`) to each MLflow run."""

    artifact_level: Literal["minimal", "standard", "full"] = "standard"
    """`minimal`: cost summary; `standard`: plus node outputs; `full`: plus prompts and raw
    replies."""

    tags: dict[str, str] = {}
    """Tags added to every run and trace."""

    redact_pii: bool = False
    """Also mask personal data and credential formats before recording: e-mails, phone and card
    numbers, IBANs, SSNs, API tokens, JWTs, `Bearer` values, private keys (secrets from the
    environment are always masked; see the Privacy section of docs/OBSERVABILITY.md)."""

    retention_days: int | None = Field(default=None, ge=1)
    """Delete runs and traces older than this many days when pruning
    (`configurable-agents observability prune`, or `prune_on_start`). Default: keep forever."""

    prune_on_start: bool = False
    """Prune runs and traces older than `retention_days` (which must be set) once per process,
    when it first records to the store; in a separate process, so no run waits for it."""

    @model_validator(mode="after")
    def _retention_for_pruning(self) -> MlflowConfig:
        if self.prune_on_start and self.retention_days is None:
            raise PydanticCustomError(
                "missing_retention", "`prune_on_start` needs `retention_days`"
            )
        return self


class OpenTelemetryConfig(ConfigModel):
    """Export of the same spans by OTLP, alongside MLflow."""

    enabled: bool = False
    """Export spans by OTLP."""

    endpoint: str | None = None
    """OTLP endpoint. Default: `OTEL_EXPORTER_OTLP_ENDPOINT`, else `http://localhost:4318`
    (http) or `http://localhost:4317` (grpc). For `http`, `/v1/traces` is appended unless the URL
    ends with it."""

    protocol: Literal["grpc", "http"] = "http"
    """OTLP transport: `http` (protobuf over HTTP) or `grpc`."""

    headers: dict[str, str] = {}
    """Headers sent with every export, e.g. an API key for a hosted collector. When empty,
    `OTEL_EXPORTER_OTLP_HEADERS` applies (better for secrets than this file)."""

    service_name: str = "configurable-agents"
    """`service.name` resource attribute."""

    sampling_rate: float = Field(default=1.0, ge=0, le=1)
    """Fraction of runs exported, 0 to 1, decided by trace id (`TraceIdRatioBased`). A run
    continuing a caller's trace (W3C `traceparent`) is exported when the caller samples it."""


class PrometheusConfig(ConfigModel):
    """Prometheus metrics for `run` (the server always serves `/metrics`; `batch` has none yet)."""

    enabled: bool = False
    """Serve metrics over HTTP while workflows run."""

    port: int = Field(default=9464, ge=1, le=65535)
    """Port of the metrics endpoint."""

    path: str = "/metrics"
    """Path of the metrics endpoint."""


class ObservabilityConfig(ConfigModel):
    """Where runs are traced, costed and measured."""

    mlflow: MlflowConfig = MlflowConfig()
    """MLflow tracing and run tracking."""

    opentelemetry: OpenTelemetryConfig = OpenTelemetryConfig()
    """OTLP span export."""

    prometheus: PrometheusConfig = PrometheusConfig()
    """Prometheus metrics."""

    pricing_file: str | None = None
    """Price file (`pricing.yaml`) adding or overriding model prices, relative to the workflow
    file. Default: `$CONFIGURABLE_AGENTS_PRICING`, else the bundled `genai-prices` database."""


class Config(ConfigModel):
    """Workflow-wide settings."""

    llm: LLMConfig = LLMConfig()
    """Default model settings for every node."""

    execution: ExecutionConfig = ExecutionConfig()
    """Timeouts, retries, budgets and concurrency."""

    tools: ToolsConfig = ToolsConfig()
    """Tool settings."""

    observability: ObservabilityConfig = ObservabilityConfig()
    """MLflow, OpenTelemetry and Prometheus."""

    memory: MemoryConfig = MemoryConfig()
    """Memory as the agent tool this one replaces wrote it: nodes with memory keep the fields
    they write from one run of a session to the next (`scope: session`)."""
