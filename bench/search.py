"""Time the search run (config/search.yaml laid over the demo) in this checkout's results/search/.

    python bench/search.py          # needs .venv (make setup); reruns nothing already complete

Writes bench/results/search.json with ``search_s`` (the wall time of the search's jobs: every
trial and the choice, summed from their Snakemake benchmark files, i.e. the time one core would
take), ``trials``, ``workflow_s`` (the whole run, every stage included, as this script saw it),
the chosen trial and the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from machine import commit, describe

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "search"


def main() -> None:
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    subprocess.run(["snakemake", "--cores", "all", "--configfile", "config/search.yaml"], cwd=REPO, env=env, check=True)
    workflow_s = time.perf_counter() - started
    benchmarks = sorted((RESULTS / "benchmarks" / "search").glob("*.tsv"))
    seconds = {p.stem: float(pd.read_csv(p, sep="\t")["s"].iloc[0]) for p in benchmarks}
    chosen = json.loads((RESULTS / "search" / "chosen.json").read_text())
    summary = pd.read_csv(RESULTS / "report" / "summary.csv")
    result = {
        "search_s": round(sum(seconds.values()), 1),
        "trials": sum(name.startswith("trial") for name in seconds),
        "trial_s": {name: round(s, 1) for name, s in seconds.items()},
        "workflow_s": round(workflow_s, 1),
        "chosen": {k: chosen[k] for k in ("trial", "overrides", "metric", "score")},
        "pearson_delta_matched": dict(zip(summary["stage"], summary["pearson_delta_matched"].round(4), strict=True)),
        "commit": commit(REPO),
        "machine": describe(),
    }
    out = REPO / "bench" / "results" / "search.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
