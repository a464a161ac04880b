"""A small MCP server written with the official SDK, for tests/test_mcp_tools.py and
bench/bench_mcp.py.

    python tests/mcp_server.py                      # stdio
    python tests/mcp_server.py --http PORT          # streamable HTTP on 127.0.0.1:PORT/mcp

With ``EXPECTED_TOKEN`` set, `whoami` says whether the server got that token (in
``TICKETS_TOKEN`` on stdio, as ``Authorization: Bearer ...`` over HTTP) without repeating it.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

app = MCPServer("tickets", log_level="WARNING")


def add(a: int, b: int) -> int:
    """Add two integers (the same function the benchmark calls as a custom tool)."""
    return a + b


app.add_tool(add)


@app.tool()
def lookup_ticket(ticket_id: str) -> str:
    """Look a ticket up by its id.

    Args:
        ticket_id: The ticket's id, e.g. T-1.
    """
    return f"ticket {ticket_id}: printer on fire, priority high"


@app.tool()
def whoami(ctx: Context) -> str:
    """Say whether the server was given the expected token."""
    expected = os.environ.get("EXPECTED_TOKEN", "")
    headers = ctx.headers or {}
    given = os.environ.get("TICKETS_TOKEN") or headers.get("authorization", "").removeprefix(
        "Bearer "
    )
    return "authorized" if expected and given == expected else "anonymous"


@app.tool()
def leak() -> str:
    """Return the token it was given (a careless server): the client must mask it."""
    return f"my token is {os.environ.get('TICKETS_TOKEN', '')}"


@app.tool()
def fail() -> str:
    """Fail with a message (an error result, isError)."""
    raise ToolError("the ticket database is down")


@app.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@app.tool()
def die() -> str:
    """Exit the process in the middle of the call."""
    print("dying now", file=sys.stderr, flush=True)
    os._exit(3)


@app.tool()
async def stall() -> str:
    """Never answer."""
    await asyncio.sleep(3600)
    return "woke up"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
