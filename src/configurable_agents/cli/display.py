"""The live view of `configurable-agents run`: one row per node execution, totals at the bottom."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine import NodeRecord, RunResult

__all__ = ["RunDisplay", "closing_line", "format_cost"]


def format_cost(cost: Decimal | None) -> str:
    """``$0.000450``, or ``unpriced``."""
    return "unpriced" if cost is None else f"${cost:.6f}"


def closing_line(result: RunResult) -> str:
    """Our users' documented last line: ``Workflow cost: $0.000450, 600 tokens``."""
    line = f"Workflow cost: {format_cost(result.cost_usd)}, {result.usage.total_tokens:,} tokens"
    return line + (" (some models unpriced)" if result.unpriced else "")


class RunDisplay:
    """A Rich live table on stderr, updated as node executions finish."""

    def __init__(self, workflow_name: str, *, verbose: bool = False) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.verbose = verbose
        self.workflow_name = workflow_name
        self.records: list[NodeRecord] = []
        self.live = Live(self._table(), console=self.console, refresh_per_second=8, transient=False)

    def __enter__(self) -> RunDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.update(self._table())
        self.live.__exit__(*exc)
        if not self.console.is_terminal:
            self.console.line()

    def on_record(self, record: NodeRecord) -> None:
        """Engine callback: show a finished execution."""
        self.records.append(record)
        self.live.update(self._table())
        if self.verbose:
            self.console.print(f"[bold]{record.node_id}[/] prompt:\n{record.prompt}")
            for call in record.tool_calls:
                self.console.print(
                    f"  tool {call.name}({call.args}) -> {call.error or call.result}"
                )
            self.console.print(f"  output: {record.output}")

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"workflow {self.workflow_name}", title_justify="left")
        for column in ("node", "model", "tokens in/out", "cost", "time", "status"):
            table.add_column(column, justify="right" if column in ("cost", "time") else "left")
        total_cost = Decimal(0)
        total_tokens = 0
        for r in self.records:
            where = r.node_id
            if r.iteration is not None:
                where += f" #{r.iteration}"
            if r.item_index is not None:
                where += f" [{r.item_index}]"
            status = "[red]✗ " + (r.error or "")[:60] + "[/]" if r.error else "[green]✓[/]"
            table.add_row(
                where,
                f"{r.provider}/{r.model}",
                f"{r.usage.input_tokens:,}/{r.usage.output_tokens:,}",
                format_cost(r.cost_usd),
                f"{r.duration_s:.2f}s",
                status,
            )
            total_cost += r.known_cost_usd
            total_tokens += r.usage.total_tokens
        count = len(self.records)
        executions = f"{count} execution{'' if count == 1 else 's'}"
        table.caption = f"{executions}, {total_tokens:,} tokens, ${total_cost:.6f}"
        return table
