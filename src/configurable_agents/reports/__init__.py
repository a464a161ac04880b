"""Cost and run reports over what runs record in MLflow (see ``docs/REPORTS.md``).

    from configurable_agents.reports import ReportQuery, cost_report, date_range

    start, end = date_range("last_30_days")
    report = cost_report(ReportQuery("sqlite:///mlflow.db", start_ms=start, end_ms=end),
                         aggregate_by="monthly")
    print(report.total_cost_usd, report.by_workflow)

MLflow is imported when a report is made, not on import.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    "write_chart": "chart",
    **dict.fromkeys(
        ("AGGREGATES", "BREAKDOWNS", "DEFAULT_BREAKDOWNS", "CostReport", "cost_report"), "costs"
    ),
    **dict.fromkeys(("from_csv", "render", "to_csv"), "export"),
    **dict.fromkeys(
        ("PERIODS", "ReportError", "ReportQuery", "date_range", "default_tracking_uri"), "query"
    ),
    **dict.fromkeys(("NodeTiming", "RunProfile", "RunSummary", "list_runs", "profile_run"), "runs"),
}


def __getattr__(name: str) -> Any:
    """Names are imported from their module on first use: the CLI stays quick to start."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)


__all__ = [
    "AGGREGATES",
    "BREAKDOWNS",
    "DEFAULT_BREAKDOWNS",
    "PERIODS",
    "CostReport",
    "NodeTiming",
    "ReportError",
    "ReportQuery",
    "RunProfile",
    "RunSummary",
    "cost_report",
    "date_range",
    "default_tracking_uri",
    "from_csv",
    "list_runs",
    "profile_run",
    "render",
    "to_csv",
    "write_chart",
]
