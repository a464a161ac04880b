"""Wall time of the light commands, against a bare interpreter start measured in the same run.

    python bench/bench_cli.py [--runs 15]

Prints the median of each command and its ratio to ``python -c pass``; the target for
``validate examples/article_writer.yaml`` is 0.5 s on the CI machine (2 cores).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_VALIDATE_S = 0.5


def _median_seconds(command: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=False, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cli = shutil.which("configurable-agents") or str(
        Path(sys.executable).with_name("configurable-agents")
    )
    cases = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "configurable-agents --help": [cli, "--help"],
        "configurable-agents validate examples/article_writer.yaml": [
            cli,
            "validate",
            "examples/article_writer.yaml",
        ],
        "configurable-agents validate examples/*.yaml (5 files)": [
            cli,
            "validate",
            *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml")),
        ],
    }
    results = {name: _median_seconds(command, args.runs) for name, command in cases.items()}
    baseline = results["python -c pass (baseline)"]
    print(f"{'command':62} {'median':>9} {'x baseline':>11}")
    for name, seconds in results.items():
        print(f"{name:62} {seconds * 1000:7.1f}ms {seconds / baseline:10.1f}x")
    validate = results["configurable-agents validate examples/article_writer.yaml"]
    verdict = "PASS" if validate <= TARGET_VALIDATE_S else "FAIL"
    print(f"validate target <= {TARGET_VALIDATE_S:.1f} s: {verdict} ({validate:.3f} s)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
