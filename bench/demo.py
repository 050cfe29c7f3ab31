"""Time the README's `make demo` on a fresh clone: venv setup, then the workflow.

    python bench/demo.py            # clones HEAD into a temporary directory

Writes bench/results/demo.json with ``setup_s`` (creating .venv from the locks), ``workflow_s``
(snakemake on the embedded default), ``peak_rss_mb`` (the largest resident set of any process
of the run) and the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from machine import commit, describe

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-report", help="copy the demo's report/ folder here before the clone is removed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deltatune-demo-") as tmp:
        clone = Path(tmp) / "deltatune"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        setup_s = timed(["make", "setup"], clone)
        workflow_s = timed(["make", "demo"], clone)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        report = clone / "results" / "demo" / "report"
        summary = pd.read_csv(report / "summary.csv")
        revision = commit(clone)
        if args.keep_report:
            shutil.copytree(report, args.keep_report, dirs_exist_ok=True)
    result = {
        "setup_s": round(setup_s, 1),
        "workflow_s": round(workflow_s, 1),
        "total_s": round(setup_s + workflow_s, 1),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "commit": revision,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "pearson_delta": dict(zip(summary["stage"], summary["pearson_delta"].round(4), strict=True)),
        "pearson_delta_ci": {
            row.stage: [round(row.pearson_delta_ci_low, 4), round(row.pearson_delta_ci_high, 4)]
            for row in summary.itertuples(index=False)
        },
        "machine": describe(),
    }
    out = REPO / "bench" / "results" / "demo.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
