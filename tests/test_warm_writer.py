"""The background writer: one per spool and destination, warm between commands, started again
when it has gone idle; `run` returns without waiting for it, and says where its trace is."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from configurable_agents import load_workflow, run_workflow
from configurable_agents.config.settings import MlflowConfig
from configurable_agents.observability.recorder import Recorder
from configurable_agents.observability.spool import Spool, WriterLock
from configurable_agents.observability.writer import BackgroundWriter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path / "spool.db"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _writers(spool: Path) -> list[int]:
    """Pids of the drainer processes of ``spool``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"configurable_agents.observability.drainer" in command
            and str(spool).encode() in command
        ):
            found.append(int(entry.name))
    return found


def _wait_for(condition: object, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_one_writer_serves_every_recorder_of_a_destination(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONFIGURABLE_AGENTS_WRITER_IDLE", "30")
    spool_path = tmp_path / "spool.db"
    first = BackgroundWriter(Spool(spool_path), store)
    assert _wait_for(lambda: WriterLock(spool_path, store).writer_alive())
    second = BackgroundWriter(Spool(spool_path), store)  # as another process would
    assert first.pid is not None and second.pid is None
    assert _writers(spool_path) == [first.pid]
    os.kill(first.pid, 15)


def test_an_idle_writer_exits_and_the_next_run_starts_one(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("CONFIGURABLE_AGENTS_WRITER_IDLE", "0.2")
    spool = Spool(tmp_path / "spool.db")
    workflow = load_workflow(ROOT / "examples" / "article_writer.yaml")
    recorder = Recorder(workflow, MlflowConfig(tracking_uri=store), spool=spool)
    lock = WriterLock(spool.path, recorder.destination)
    assert _wait_for(lambda: not lock.writer_alive() and not _writers(spool.path))  # went idle
    trace_id = recorder.record(run_workflow(workflow, {"topic": "bees"}, llm="mock", trace=False))
    assert _wait_for(lambda: spool.pending() == 0)  # recording started a writer again
    assert MlflowClient(store).get_trace(trace_id) is not None


def test_run_returns_before_the_trace_is_written_and_says_where_it_is(
    store: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    env = {
        **os.environ,
        "CONFIGURABLE_AGENTS_TRACING": "on",
        "CONFIGURABLE_AGENTS_WRITER_IDLE": "30",
        "MLFLOW_TRACKING_URI": store,
    }
    workflow = tmp_path / "wf.yaml"
    text = (ROOT / "examples" / "article_writer.yaml").read_text()
    workflow.write_text(text.replace('tracking_uri: "sqlite:///mlflow.db", ', ""))
    ran = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "run", str(workflow), "-i", "topic=bees",
         "--llm", "mock"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    line = next(line for line in ran.stderr.splitlines() if line.startswith("Trace "))
    trace_id = line.split()[1]
    assert (
        f"spooled in {tmp_path / 'spool.db'}; the background writer is writing it to {store}"
        in line
        or line.endswith(f"written to {store}")
    )
    spool_path = tmp_path / "spool.db"
    assert _writers(spool_path), "the writer outlives the command, warm for the next one"
    assert _wait_for(lambda: Spool(spool_path).pending() == 0)
    assert MlflowClient(store).get_trace(trace_id).info.trace_id == trace_id
    for pid in _writers(spool_path):
        os.kill(pid, 15)


def test_run_wait_returns_once_the_trace_is_written(store: str, tmp_path: Path) -> None:
    env = {**os.environ, "CONFIGURABLE_AGENTS_TRACING": "on", "MLFLOW_TRACKING_URI": store}
    workflow = tmp_path / "wf.yaml"
    text = (ROOT / "examples" / "article_writer.yaml").read_text()
    workflow.write_text(text.replace('tracking_uri: "sqlite:///mlflow.db", ', ""))
    ran = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "run", str(workflow), "-i", "topic=bees",
         "--llm", "mock", "--wait"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert f"written to {store}" in ran.stderr
    assert Spool(tmp_path / "spool.db").pending() == 0
