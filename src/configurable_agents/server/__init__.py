"""The HTTP API of a workflow (`configurable-agents serve`): runs, their job table, and metrics.

- :mod:`.jobs` — the SQLite job table every replica can read;
- :mod:`.executor` — how a run is executed (in-process today), behind ``submit/wait/cancel``;
- :mod:`.metrics` — Prometheus metrics fed by finished runs;
- :mod:`.app` — the FastAPI application.

Importing this package imports nothing heavy; FastAPI is imported by :mod:`.app` only.
"""
