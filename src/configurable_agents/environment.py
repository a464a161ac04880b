"""Names of the environment variables the HTTP server reads.

The server reads them; ``deploy`` sets them in the containers it writes. Both take the names
from here, so that neither imports the other. Importing this module imports nothing.
"""

from __future__ import annotations

__all__ = ["RUNS_DB_ENV", "TOKEN_ENV"]

RUNS_DB_ENV = "CONFIGURABLE_AGENTS_RUNS_DB"
"""The SQLite job table of `serve` when --db is not given."""

TOKEN_ENV = "CONFIGURABLE_AGENTS_API_TOKEN"
"""When set, the bearer token every request to the HTTP API needs (``Authorization``)."""
