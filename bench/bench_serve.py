"""`configurable-agents serve` under sustained load, untraced and then traced, in the same run.

    python bench/bench_serve.py [--seconds 60] [--concurrency 8]

The quick start (examples/article_writer.yaml, one node, ``--llm mock``) is served twice on a free
127.0.0.1 port: with ``CONFIGURABLE_AGENTS_TRACING=off``, then ``on`` into a fresh SQLite store
and spool in a temporary directory. Each server gets a short warm-up (the traced one's background
writer then drains what it spooled), then ``--concurrency`` keep-alive clients send synchronous
``POST /runs`` back to back for ``--seconds``. Printed for each: requests/s, p50 and p99 latency,
errors (non-2xx and connection errors) and runs that did not succeed; the CPU seconds the server,
its background writer and the clients used during the load; traced/untraced ratios; and for the
traced one the spool backlog when the load stopped, how long after it the backlog reached 0
(target: within 5 s; the exit status, with no errors), the writer's rate during and after the load,
and how many traces are in the store against the traced answers.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from configurable_agents.observability.spool import Spool, WriterLock  # noqa: E402

TARGET_DRAIN_S = 5.0
WRITER_IDLE_S = 5.0
"""The background writer exits this long after its last row, so that it is gone at the end."""
BODY = json.dumps({"inputs": {"topic": "bees"}}).encode()
MAX_REQUESTS_PER_CLIENT = 1_000_000


@dataclass
class Load:
    """What the clients saw during one load."""

    latencies: list[float] = field(default_factory=list)
    """Seconds per answered 2xx request."""
    errors: int = 0
    """Non-2xx answers and connection errors."""
    not_success: int = 0
    """2xx answers whose run did not end ``success``."""
    traced: int = 0
    """Answers carrying a trace id."""
    seconds: float = 0.0

    def merge(self, other: Load) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.not_success += other.not_success
        self.traced += other.traced

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[round(q * 100) - 1]


def _client(host: str, port: int, deadline: float, out: Load) -> None:
    """One keep-alive connection sending ``POST /runs`` until ``deadline``."""
    connection = None
    headers = {"content-type": "application/json"}
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if time.perf_counter() >= deadline:
            break
        started = time.perf_counter()
        try:
            if connection is None:
                connection = http.client.HTTPConnection(host, port, timeout=60)
                connection.connect()
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.request("POST", "/runs", BODY, headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            out.errors += 1
            if connection is not None:
                connection.close()
            connection = None
            time.sleep(0.01)
            continue
        elapsed = time.perf_counter() - started
        if not 200 <= response.status < 300:
            out.errors += 1
            continue
        out.latencies.append(elapsed)
        run = json.loads(data)
        out.not_success += run.get("status") != "success"
        out.traced += bool(run.get("trace_id"))
    if connection is not None:
        connection.close()


def load(url: str, seconds: float, concurrency: int) -> Load:
    """``concurrency`` clients for ``seconds``; the figures of all of them."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    started = time.perf_counter()
    deadline = started + seconds
    results = [Load() for _ in range(concurrency)]
    threads = [
        threading.Thread(target=_client, args=(host, int(port), deadline, r), daemon=True)
        for r in results
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)  # a request answers within its 60 s timeout
    total = Load(seconds=time.perf_counter() - started)
    for r in results:
        total.merge(r)
    return total


class Server:
    """A `serve` process on a free port of 127.0.0.1, its log in a file."""

    def __init__(self, cli: str, folder: Path, workflow: Path, env: dict[str, str]) -> None:
        self.log_path = folder / "serve.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [cli, "serve", str(workflow), "--llm", "mock", "--host", "127.0.0.1",
                 "--port", "0", "--db", str(folder / "runs.db")],
                cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log,
            )  # fmt: skip
        self.url = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.process.poll() is None:
            text = self.log_path.read_text()
            if "Application startup complete" in text:
                line = next(x for x in text.splitlines() if x.startswith("serving "))
                self.url = line.split(" on ", 1)[1].split(" ", 1)[0]
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"serve did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _trace_count(uri: str) -> int:
    """Traces in the store at ``uri``, counted with SQL (no MLflow import in this process)."""
    path = uri.removeprefix("sqlite:///")
    if not Path(path).exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
        try:
            return int(connection.execute("SELECT COUNT(*) FROM trace_info").fetchone()[0])
        except sqlite3.OperationalError:  # no schema yet
            return 0


def _wait_drained(spool: Spool, timeout: float) -> float | None:
    """Seconds until the spool is empty, or None if it is not within ``timeout``."""
    started = time.perf_counter()
    while spool.pending():
        if time.perf_counter() - started > timeout:
            return None
        time.sleep(0.02)
    return time.perf_counter() - started


def _writer_pids(spool_path: Path) -> list[int]:
    """Background writers draining ``spool_path`` (a path unique to this run)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"configurable_agents.observability.drainer" in argv and (
                str(spool_path).encode() in argv
            ):
                pids.append(int(proc.name))
    return pids


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _stop_writer(spool_path: Path, uri: str) -> None:
    """Wait for the writer the server started to go idle and exit; end it if it does not."""
    lock = WriterLock(spool_path, uri)
    deadline = time.monotonic() + WRITER_IDLE_S + 20
    while lock.writer_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    lock.release()
    for pid in _writer_pids(spool_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@dataclass
class Measured:
    load: Load
    before: int = 0
    """Runs spooled when the load started."""
    backlog: int = 0
    drain_s: float | None = 0.0
    left: int = 0
    stored: int = 0
    expected: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds used during the load by the server, its background writer and the clients."""


def measure(cli: str, folder: Path, traced: bool, args: argparse.Namespace) -> Measured:
    """Serve the quick start in ``folder``, warm it up, load it, and (traced) time the drain."""
    folder.mkdir()
    uri = f"sqlite:///{folder}/mlflow.db"
    spool_path = folder / "spool.db"
    workflow = folder / "article_writer.yaml"
    text = (ROOT / "examples" / "article_writer.yaml").read_text()
    workflow.write_text(
        text.replace('tracking_uri: "sqlite:///mlflow.db"', f'tracking_uri: "{uri}"')
    )
    env = {k: v for k, v in os.environ.items() if k != "CONFIGURABLE_AGENTS_API_TOKEN"}
    env.update(
        CONFIGURABLE_AGENTS_TRACING="on" if traced else "off",
        MLFLOW_TRACKING_URI=uri,
        CONFIGURABLE_AGENTS_SPOOL=str(spool_path),
        CONFIGURABLE_AGENTS_WRITER_IDLE=str(WRITER_IDLE_S),
    )
    server = Server(cli, folder, workflow, env)
    spool = Spool(spool_path)
    try:
        warm = load(server.url, args.warmup, args.concurrency)
        _wait_drained(spool, 60)  # the writer is warm and the store exists before the load
        before = spool.pending()
        pids = {"server": [server.process.pid], "writer": _writer_pids(spool_path)}
        cpu = {name: _cpu_seconds(group) for name, group in pids.items()}
        cpu["clients"] = time.process_time()
        result = Measured(load(server.url, args.seconds, args.concurrency), before)
        result.cpu = {name: _cpu_seconds(group) - cpu[name] for name, group in pids.items()}
        result.cpu["clients"] = time.process_time() - cpu["clients"]
        result.backlog = spool.pending()
        result.drain_s = _wait_drained(spool, args.drain_timeout)
        result.left = spool.pending()
        result.stored = _trace_count(uri)
        result.expected = warm.traced + result.load.traced
    finally:
        server.stop()
        if traced:
            _stop_writer(spool_path, uri)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load per server")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the load")
    parser.add_argument(
        "--drain-timeout", type=float, default=120.0, help="most seconds to wait for the spool"
    )
    args = parser.parse_args()
    cli = shutil.which("configurable-agents") or str(
        Path(sys.executable).with_name("configurable-agents")
    )
    # a writer may still hold the temporary store when the directory is removed
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        plain = measure(cli, Path(tmp) / "untraced", False, args)
        traced = measure(cli, Path(tmp) / "traced", True, args)
    print(
        f"serve examples/article_writer.yaml --llm mock: {args.concurrency} clients, "
        f"{args.seconds:g} s each"
    )
    header = f"{'':10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{header} {'errors':>7} {'not success':>12}")
    for name, m in (("untraced", plain), ("traced", traced)):
        print(
            f"{name:10} {len(m.load.latencies):9d} {m.load.per_s:8.1f} "
            f"{m.load.quantile(0.5) * 1000:8.2f} {m.load.quantile(0.99) * 1000:8.2f} "
            f"{m.load.errors:7d} {m.load.not_success:12d}"
        )
    for name, m in (("untraced", plain), ("traced", traced)):
        shares = ", ".join(f"{who} {seconds:.1f}" for who, seconds in m.cpu.items())
        print(f"CPU seconds during the {name} load: {shares}")
    a, b = traced.load, plain.load
    p50, p99 = a.quantile(0.5) / b.quantile(0.5), a.quantile(0.99) / b.quantile(0.99)
    print(f"traced / untraced: req/s {a.per_s / b.per_s:.2f}x, p50 {p50:.2f}x, p99 {p99:.2f}x")
    drained = traced.drain_s is not None and traced.drain_s <= TARGET_DRAIN_S
    when = (
        f"drained {traced.drain_s:.2f} s after the load stopped"
        if traced.drain_s is not None
        else f"NOT drained {args.drain_timeout:g} s after the load stopped ({traced.left} left)"
    )
    print(f"traced spool: {traced.backlog} runs waiting when the load stopped; {when}")
    during = (traced.load.traced + traced.before - traced.backlog) / traced.load.seconds
    after = f"{traced.backlog / traced.drain_s:.1f}" if traced.drain_s else "-"
    answered = traced.load.traced / traced.load.seconds
    print(
        f"background writer: {during:.1f} runs/s written during the load (against "
        f"{answered:.1f} traced runs/s answered), {after} runs/s after it"
    )
    print(
        f"traces in the store: {traced.stored} of {traced.expected} traced answers "
        f"(warm-up included)"
    )
    print(f"drain target <= {TARGET_DRAIN_S:g} s: {'PASS' if drained else 'FAIL'}")
    errors = plain.load.errors + traced.load.errors
    return 0 if drained and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
