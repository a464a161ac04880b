"""The HTTP API of a workflow (`configurable-agents serve`): runs, their job table, their metrics.

Prometheus metrics are an observer of the runs, in ``observability.prometheus``.

- :mod:`.jobs` — the SQLite job table every replica can read;
- :mod:`.executor` — how a run is executed (in-process today), behind ``submit/wait/cancel``;
- :mod:`.app` — the FastAPI application.

Importing this package imports nothing heavy; FastAPI is imported by :mod:`.app` only.
"""
