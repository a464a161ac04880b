"""Cost over time, stacked by workflow or model: a PNG (matplotlib) or a self-contained HTML page
(inline SVG and data, nothing fetched)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from .costs import CostReport
from .export import atomic_output
from .query import ReportError

__all__ = ["CHART_SUFFIXES", "chart_series", "write_chart"]

CHART_SUFFIXES = (".png", ".html")
_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")  # fmt: skip


def chart_series(report: CostReport, by: str) -> tuple[list[str], dict[str, list[float]]]:
    """The periods, and for each workflow (``by="workflow"``) or model its cost per period."""
    periods = [p["period"] for p in report.periods]
    names = sorted({name for p in report.periods for name in p[f"by_{by}"]})
    series = {name: [p[f"by_{by}"].get(name, 0.0) for p in report.periods] for name in names}
    return periods, series


def write_chart(report: CostReport, path: Path, by: str = "workflow") -> None:
    """Write the report's cost per period, stacked ``by`` workflow or model, to ``path``
    (``.png`` or ``.html``).

    Raises:
        ReportError: another suffix, or a report without periods.
    """
    if path.suffix.lower() not in CHART_SUFFIXES:
        raise ReportError(f"--chart {path}: must end in .png or .html")
    if not report.periods:
        raise ReportError("--chart: no runs in the period, nothing to draw")
    periods, series = chart_series(report, by)
    title = f"Cost by {by} (USD)"
    if path.suffix.lower() == ".png":
        _png(path, title, periods, series)
    else:
        with atomic_output(path) as out:
            out.write(_html(title, periods, series, report))


def _png(path: Path, title: str, periods: list[str], series: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(max(6.0, 0.5 * len(periods) + 3), 4.5), dpi=100)
    bottom = [0.0] * len(periods)
    for index, (name, values) in enumerate(series.items()):
        axes.bar(periods, values, bottom=bottom, label=name, color=_COLORS[index % len(_COLORS)])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.set_title(title)
    axes.set_ylabel("USD")
    axes.tick_params(axis="x", labelrotation=45)
    axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_output(path, "wb") as out:
        figure.savefig(out, format="png")
    pyplot.close(figure)


def _html(
    title: str, periods: list[str], series: dict[str, list[float]], report: CostReport
) -> str:
    width, height, left, bottom_margin = 760, 360, 70, 60
    plot_w, plot_h = width - left - 20, height - bottom_margin - 30
    totals = [sum(values[i] for values in series.values()) for i in range(len(periods))]
    top = max(totals) or 1.0
    bar_w = plot_w / len(periods)
    shapes: list[str] = []
    for i, period in enumerate(periods):
        y: float = 30 + plot_h
        for index, (name, values) in enumerate(series.items()):
            h = values[i] / top * plot_h
            y -= h
            shapes.append(
                f'<rect x="{left + i * bar_w + 2:.1f}" y="{y:.1f}" width="{bar_w - 4:.1f}" '
                f'height="{h:.1f}" fill="{_COLORS[index % len(_COLORS)]}">'
                f"<title>{html.escape(period)} {html.escape(name)}: ${values[i]:.6f}</title></rect>"
            )
        shapes.append(
            f'<text x="{left + (i + 0.5) * bar_w:.1f}" y="{height - bottom_margin + 16}" '
            f'font-size="10" text-anchor="middle">{html.escape(period)}</text>'
        )
    shapes.append(f'<text x="4" y="34" font-size="10">${top:.6f}</text>')
    shapes.append(f'<text x="4" y="{30 + plot_h}" font-size="10">$0</text>')
    legend = "".join(
        f'<li><span style="background:{_COLORS[i % len(_COLORS)]}"></span>{html.escape(name)}'
        f" ${sum(values):.6f}</li>"
        for i, (name, values) in enumerate(series.items())
    )
    data = json.dumps({"periods": periods, "series": series, "report": report.to_dict()})
    data = data.replace("</", "<\\/")  # cannot end the script element early
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}ul{{list-style:none;padding:0}}
li span{{display:inline-block;width:12px;height:12px;margin-right:6px}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Total ${report.total_cost_usd:.6f} over {report.total_runs} runs.</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">
{"".join(shapes)}</svg>
<ul>{legend}</ul>
<script type="application/json" id="report-data">{data}</script>
</body></html>
"""
