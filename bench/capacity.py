"""Run and time the capacity configs (issue 27) in this checkout's results/, and draw their figure.

    python bench/capacity.py capacity          # config/capacity.yaml laid over the demo
    python bench/capacity.py capacity_large    # config/capacity_large.yaml: the ladder's ends, larger base
    python bench/capacity.py --figure          # only redraw the figure from the runs recorded

Each call runs the whole workflow (``snakemake --cores all``, every rule) for one config and
records, under ``runs.<run>`` of bench/results/capacity.json: ``workflow_s`` (the wall time of
that call: run it on a fresh results folder, or it times only what was stale), the base model's
architecture, and one row per stage or baseline with its ``trainable_parameters`` and
plate-matched score ``pearson_delta_matched`` (with its interval, the paired test against the
stage it extends, and ``p_vs_full_matched``: the same paired Wilcoxon test against
``full_batch_delta``, every weight trained). It then draws docs/figures/capacity.png from every run recorded so far, the
same figure the report draws for one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml
from machine import commit, describe

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

FULL = "full_batch_delta"  # every weight trained: what each rung is compared with
OUT = REPO / "bench" / "results" / "capacity.json"
FIGURE = REPO / "docs" / "figures" / "capacity.png"
COLUMNS = [
    "stage",
    "previous_stage",
    "trainable_parameters",
    "pearson_delta_matched",
    "pearson_delta_matched_ci_low",
    "pearson_delta_matched_ci_high",
    "p_vs_previous_matched",
    "p_vs_full_matched",
    "pearson_delta",
    "adapted",
    "n_replicates",
]


def p_vs_full(comparison: pd.DataFrame, summary: pd.DataFrame) -> pd.Series:
    """Paired test of each fine-tuned stage's plate-matched scores against ``full_batch_delta``'s
    (empty for the other rows and for that stage itself)."""
    from deltatune.metrics import MATCHED
    from deltatune.report.statistics import paired_test, score_matrix

    full = score_matrix(comparison, FULL, MATCHED)
    tuned = (summary["trainable_parameters"] > 0) & (summary["stage"] != FULL)

    def against_full(stage: str) -> float:
        return paired_test(score_matrix(comparison, stage, MATCHED), full)

    return summary["stage"].where(tuned).map(against_full, na_action="ignore")


def draw(runs: dict) -> None:
    """docs/figures/capacity.png from the recorded ``runs``, each labelled by its base's size."""
    from deltatune.report.figures import capacity

    def label(run: str) -> str:
        arch = runs[run]["architecture"]
        return f"base hidden {arch['hidden_dim']}, {arch['n_layers']} layers ({run})"

    FIGURE.write_bytes(capacity({label(name): pd.DataFrame(r["rows"]) for name, r in runs.items()}))


def main() -> None:
    if sys.argv[1] == "--figure":
        draw(json.loads(OUT.read_text())["runs"])
        return
    run, code = sys.argv[1], commit(REPO)
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    subprocess.run(["snakemake", "--cores", "all", "--configfile", f"config/{run}.yaml"], cwd=REPO, env=env, check=True)
    workflow_s = time.perf_counter() - started
    report = REPO / "results" / run / "report"
    summary = pd.read_csv(report / "summary.csv")
    summary["p_vs_full_matched"] = p_vs_full(pd.read_csv(report / "comparison.csv"), summary)
    config = json.loads((report / "provenance.json").read_text())["config"]
    result = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
    result["runs"][run] = {
        "workflow_s": round(workflow_s, 1),
        "architecture": config["base_model"]["architecture"],
        "rows": json.loads(summary[COLUMNS].to_json(orient="records")),
        "commit": code,
        "date": datetime.now(UTC).date().isoformat(),
        "machine": describe(),
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    draw(result["runs"])
    print(yaml.safe_dump(result["runs"][run], sort_keys=False))


if __name__ == "__main__":
    main()
