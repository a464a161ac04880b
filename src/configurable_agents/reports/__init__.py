"""Cost and run reports over what runs record in MLflow (see ``docs/REPORTS.md``).

    from configurable_agents.reports import ReportQuery, cost_report, date_range

    start, end = date_range("last_30_days")
    report = cost_report(ReportQuery("sqlite:///mlflow.db", start_ms=start, end_ms=end),
                         aggregate_by="monthly")
    print(report.total_cost_usd, report.by_workflow)

MLflow is imported when a report is made, not on import.
"""

from .chart import write_chart
from .costs import AGGREGATES, BREAKDOWNS, CostReport, cost_report
from .export import from_csv, render, to_csv
from .query import PERIODS, ReportError, ReportQuery, date_range, default_tracking_uri
from .runs import NodeTiming, RunProfile, RunSummary, list_runs, profile_run

__all__ = [
    "AGGREGATES",
    "BREAKDOWNS",
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
