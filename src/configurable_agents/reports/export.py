"""Cost reports as text, JSON and CSV, and writing files whole or not at all."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .costs import CostReport
from .query import ReportError

__all__ = ["CSV_COLUMNS", "atomic_output", "check_writable", "from_csv", "render", "to_csv"]

CSV_COLUMNS = ("section", "name", "provider", "period", "runs", "successful", "failed",
               "tokens", "cost_usd")  # fmt: skip
"""One row per figure group: ``summary``, ``workflow``, ``model``, ``node`` (name
``workflow/node``), ``tag:KEY`` (name the tag's value), ``period`` (name empty for the period's
total, else a workflow or a model with provider ``workflow``/``model``), ``unpriced`` (name a
trace id) and ``unpriced_model``."""


def check_writable(path: str | os.PathLike[str], option: str) -> Path:
    """``path``, once sure a file can be written there.

    Raises:
        ReportError: its folder is missing or not writable, or it is a folder.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ReportError(f"{option} {target}: is a directory")
    if not folder.is_dir():
        raise ReportError(f"{option} {target}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ReportError(f"{option} {target}: not writable")
    return target


@contextmanager
def atomic_output(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file that appears at ``path`` only once fully written (a temp file renamed)."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, encoding=None if "b" in mode else "utf-8") as out:
            yield out
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _money(value: float) -> str:
    return f"${value:,.6f}"


def render_table(report: CostReport) -> str:
    """The report as the documented plain-text summary."""
    lines = [
        "Cost Summary:",
        f"  Total Cost:        {_money(report.total_cost_usd)}",
        f"  Total Runs:        {report.total_runs}",
        f"  Successful:        {report.successful}",
        f"  Failed:            {report.failed}",
        f"  Total Tokens:      {report.total_tokens:,}",
        f"  Avg Cost/Run:      {_money(report.avg_cost_per_run)}",
        f"  Avg Tokens/Run:    {report.avg_tokens_per_run:.0f}",
    ]
    unpriced = report.unpriced
    if unpriced["runs"]:
        lines.append(
            f"  Unpriced Runs:     {unpriced['runs']} (calls to "
            f"{', '.join(unpriced['models']) or 'unpriced models'} are not in Total Cost)"
        )
    sections = (
        ("Cost by Workflow:", 28, [(w["workflow"], w["cost_usd"]) for w in report.by_workflow]),
        ("Cost by Model:", 27, [(m["model"], m["cost_usd"]) for m in report.by_model]),
        ("Cost by Node:", 28, [(f"{n['workflow']}/{n['node']}", n["cost_usd"])
                               for n in report.by_node]),
    )  # fmt: skip
    tags = tuple(
        (f"Cost by Tag {key}:", 28, [(row["value"], row["cost_usd"]) for row in rows])
        for key, rows in report.by_tag.items()
    )
    for title, width, rows in sections + tags:  # the documented columns, wider for long names
        if rows:
            width = max(width, *(len(name) for name, _ in rows))
            lines.append(title)
            lines += [f"  {name:<{width}} {_money(cost)}" for name, cost in rows]
    if report.periods:
        lines.append("Cost by Period:")
        lines += [
            f"  {p['period']:<12} {p['runs']:>8} runs  {_money(p['cost_usd'])}"
            for p in report.periods
        ]
    if unpriced["trace_ids"]:
        lines.append("Unpriced Runs (newest first):")
        lines += [f"  {trace_id}" for trace_id in unpriced["trace_ids"]]
    return "\n".join(lines) + "\n"


def _rows(report: CostReport) -> Iterator[dict[str, Any]]:
    yield {"section": "summary", "runs": report.total_runs, "successful": report.successful,
           "failed": report.failed, "tokens": report.total_tokens,
           "cost_usd": report.total_cost_usd}  # fmt: skip
    for w in report.by_workflow:
        yield {"section": "workflow", "name": w["workflow"], "runs": w["runs"],
               "successful": w["successful"], "failed": w["failed"], "tokens": w["tokens"],
               "cost_usd": w["cost_usd"]}  # fmt: skip
    for m in report.by_model:
        yield {"section": "model", "name": m["model"], "provider": m["provider"],
               "cost_usd": m["cost_usd"]}  # fmt: skip
    for n in report.by_node:
        yield {"section": "node", "name": f"{n['workflow']}/{n['node']}", "cost_usd": n["cost_usd"]}
    for key, rows in report.by_tag.items():
        for row in rows:
            yield {"section": f"tag:{key}", "name": row["value"], "runs": row["runs"],
                   "successful": row["successful"], "failed": row["failed"],
                   "tokens": row["tokens"], "cost_usd": row["cost_usd"]}  # fmt: skip
    for p in report.periods:
        yield {"section": "period", "period": p["period"], "runs": p["runs"],
               "cost_usd": p["cost_usd"]}  # fmt: skip
        for kind in ("workflow", "model"):
            for name, cost in p[f"by_{kind}"].items():
                yield {"section": "period", "period": p["period"], "name": name,
                       "provider": kind, "cost_usd": cost}  # fmt: skip
    yield {"section": "unpriced", "runs": report.unpriced["runs"]}
    for trace_id in report.unpriced["trace_ids"]:
        yield {"section": "unpriced", "name": trace_id}
    for model in report.unpriced["models"]:
        yield {"section": "unpriced_model", "name": model}


def to_csv(report: CostReport) -> str:
    """The report as CSV with :data:`CSV_COLUMNS` (costs at full precision)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _rows(report):
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return out.getvalue()


def from_csv(text: str) -> CostReport:
    """The report a :func:`to_csv` export holds (figures only; filters and source are not in
    the CSV)."""
    report = CostReport(source="", filters={})
    periods: dict[str, dict[str, Any]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        section, name = row["section"], row["name"]
        cost = float(row["cost_usd"]) if row["cost_usd"] else 0.0
        counts = {k: int(row[k]) for k in ("runs", "successful", "failed", "tokens") if row[k]}
        if section == "summary":
            report.total_runs, report.successful = counts["runs"], counts["successful"]
            report.failed, report.total_tokens = counts["failed"], counts["tokens"]
            report.total_cost_usd = cost
        elif section == "workflow":
            report.by_workflow.append({"workflow": name, **counts, "cost_usd": cost})
        elif section == "model":
            report.by_model.append({"model": name, "provider": row["provider"], "cost_usd": cost})
        elif section == "node":
            workflow, _, node = name.partition("/")
            report.by_node.append({"workflow": workflow, "node": node, "cost_usd": cost})
        elif section.startswith("tag:"):
            row_ = {"value": name, **counts, "cost_usd": cost}
            report.by_tag.setdefault(section[len("tag:") :], []).append(row_)
        elif section == "period" and not name:
            period = {"period": row["period"], "runs": counts["runs"], "cost_usd": cost}
            periods[row["period"]] = {**period, "by_workflow": {}, "by_model": {}}
            report.periods.append(periods[row["period"]])
        elif section == "period":
            periods[row["period"]][f"by_{row['provider']}"][name] = cost
        elif section == "unpriced" and not name:
            report.unpriced["runs"] = counts["runs"]
        elif section == "unpriced":
            report.unpriced["trace_ids"].append(name)
        elif section == "unpriced_model":
            report.unpriced["models"].append(name)
    return report


def render(report: CostReport, fmt: str) -> str:
    """The report in ``table``, ``json`` or ``csv`` form."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2) + "\n"
    if fmt == "csv":
        return to_csv(report)
    return render_table(report)
