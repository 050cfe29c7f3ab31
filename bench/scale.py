"""A million-cell line through the workflow's own commands: time and peak memory of every step.

    python bench/scale.py [--cells-per-well 4400] [--controls-per-plate 17000] [--keep DIR]

A simulated screen whose target line has about 1,000,000 cells x 2,000 genes (CSR, about 10%
non-zero, as HVG-selected real data; 12 plates, 40 drugs at 3 doses: 120 perturbations) runs
through ``deltatune preprocess``, ``pair``, ``finetune`` (one epoch cut to about 200 optimizer
steps), ``infer`` (every test cell) and ``evaluate``, each as its own process, as the rules run
them. The base model is pretrained first on a small screen of the same genes and drugs. Peak
resident memory is each process's own (``wait4``). Writes ``bench/results/scale.json``:
``n_cells``, ``n_genes``, ``csr_bytes`` (the target line's CSR X in memory), ``<step>_s`` and
``<step>_rss_bytes`` per step, ``<step>_rss_vs_csr`` for finetune, infer and evaluate, and the
prediction's X written with gzip and without (seconds and bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import pandas as pd
from machine import describe

BIN = Path(sys.executable).parent
COLUMNS = json.dumps(
    {
        "perturbation": "drugname_drugconc",
        "control": "[('DMSO_TF', 0.0, 'uM')]",
        "cell_type": "cell_line",
        "batch": "plate",
        "drug": "drug",
        "dose": "concentration",
    }
)
SCREEN = {"n_genes": 2000, "n_drugs": 40, "doses_um": [0.1, 1.0, 10.0], "depth": 250.0}
ARCHITECTURE = {"hidden_dim": 64, "n_layers": 2, "n_heads": 4, "cell_set_len": 16}
TARGET_STEPS = 200
THREADS = 2
TARGETS = {"finetune_rss_vs_csr": 2.0, "infer_rss_vs_csr": 2.0, "evaluate_rss_vs_csr": 3.0, "evaluate_s": 900.0}


class Steps:
    """Runs ``deltatune`` commands in ``work`` and records each one's seconds and peak RSS."""

    def __init__(self, work: Path):
        self.work = work
        self.figures: dict[str, float] = {}

    def __call__(self, name: str, command: str, *args: str, record: bool = True) -> None:
        started = time.perf_counter()
        with open(self.work / f"{name}.log", "w") as log:
            process = subprocess.Popen([str(BIN / "deltatune"), command, *map(str, args)], stderr=log, cwd=self.work)
            _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"deltatune {command} failed: {(self.work / f'{name}.log').read_text()[-3000:]}")
        print(f"{name:<12}{seconds:8.1f} s {usage.ru_maxrss / 2**20:8.2f} GB", file=sys.stderr)
        if record:
            self.figures |= {f"{name}_s": round(seconds, 1), f"{name}_rss_bytes": usage.ru_maxrss * 1024}


def csr_bytes(path: Path) -> int:
    """Bytes of an .h5ad's CSR X in memory (data, indices, indptr), read from the file's shapes."""
    with h5py.File(path) as f:
        return int(sum(f["X"][part].size * f["X"][part].dtype.itemsize for part in ("data", "indices", "indptr")))


def prediction_writes(path: Path, work: Path) -> dict:
    """The prediction's X rewritten with gzip and without: seconds and file bytes of each."""
    with h5py.File(path) as f:
        X = f["X"][:]
    figures = {}
    for name, compression in (("gzip", "gzip"), ("none", None)):
        out = work / f"x_{name}.h5"
        started = time.perf_counter()
        with h5py.File(out, "w") as f:
            f.create_dataset("X", data=X, chunks=(min(len(X), 1024), X.shape[1]), compression=compression)
        figures |= {
            f"prediction_{name}_write_s": round(time.perf_counter() - started, 1),
            f"prediction_{name}_bytes": out.stat().st_size,
        }
        out.unlink()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells-per-well", type=int, default=4400)
    parser.add_argument("--controls-per-plate", type=int, default=17000)
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.json"))
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="deltatune-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    step = Steps(work)
    threads = ("--threads", THREADS)

    # The base model: a small screen of the same genes and drugs, pretrained briefly (not measured).
    small = {
        **SCREEN,
        "cell_lines": ["b1", "b2"],
        "plates_per_line": 2,
        "cells_per_well": 8,
        "controls_per_plate": 60,
        "seed": 1,
    }
    step("base_sim", "simulate", "--settings", json.dumps(small), "--out", "small.h5ad", record=False)
    step(
        "base_pre",
        "preprocess",
        "--input",
        "small.h5ad",
        "--columns",
        COLUMNS,
        "--settings",
        json.dumps({"target_cell_line": "b2", "n_top_genes": SCREEN["n_genes"]}),
        "--out-base",
        "small_base.h5ad",
        "--out-target",
        "small_target.h5ad",
        "--out-split",
        "small_split.tsv",
        "--out-summary",
        "small.json",
        record=False,
    )
    step(
        "base_pair",
        "pair",
        "--data",
        "small_base.h5ad",
        "--columns",
        COLUMNS,
        "--strategy",
        "batch_celltype",
        "--out",
        "small_pairing.npz",
        record=False,
    )
    pretrain = {"epochs": 2, "batch_size": 128, "lr": 1e-3, "pairing": "batch_celltype"}
    step(
        "pretrain",
        "pretrain",
        "--data",
        "small_base.h5ad",
        "--pairing",
        "small_pairing.npz",
        "--columns",
        COLUMNS,
        "--architecture",
        json.dumps(ARCHITECTURE),
        "--settings",
        json.dumps(pretrain),
        "--out",
        "base",
        "--work-dir",
        "work_base",
        *threads,
        "--accelerator",
        "cpu",
        record=False,
    )

    # The million-cell screen (two lines: the simulator's lines are equal in size), then the steps.
    big = {
        **SCREEN,
        "cell_lines": ["c37", "c99"],
        "plates_per_line": 12,
        "cells_per_well": args.cells_per_well,
        "controls_per_plate": args.controls_per_plate,
        "seed": 3,
    }
    step("simulate", "simulate", "--settings", json.dumps(big), "--out", "screen.h5ad")
    preprocess = {
        "target_cell_line": "c37",
        "n_top_genes": SCREEN["n_genes"],
        "base_cell_lines": [],
        "split": {"val_fraction": 0.1, "test_fraction": 0.3, "seed": 0},
    }
    step(
        "preprocess",
        "preprocess",
        "--input",
        "screen.h5ad",
        "--columns",
        COLUMNS,
        "--settings",
        json.dumps(preprocess),
        "--out-base",
        "base_lines.h5ad",
        "--out-target",
        "target.h5ad",
        "--out-split",
        "split.tsv",
        "--out-summary",
        "preprocess.json",
    )
    step("pair", "pair", "--data", "target.h5ad", "--columns", COLUMNS, "--strategy", "batch", "--out", "pairing.npz")
    split = pd.read_csv(work / "split.tsv", sep="\t")
    train_cells = int(split.loc[split["split"] == "train", "n_cells"].sum())
    set_len = ARCHITECTURE["cell_set_len"]
    batch = set_len * max(1, round(train_cells / set_len / TARGET_STEPS))
    stage = {
        "pairing": "batch",
        "epochs": 1,
        "batch_size": batch,
        "lr": 1e-3,
        "checkpoint_every": 1000,
        "lora": {"targets": ["backbone_attention"], "rank": 8, "alpha": 16},
    }
    step(
        "finetune",
        "finetune",
        "--data",
        "target.h5ad",
        "--split",
        "split.tsv",
        "--base",
        "base",
        "--pairing",
        "pairing.npz",
        "--columns",
        COLUMNS,
        "--stage",
        "scale",
        "--settings",
        json.dumps(stage),
        "--out",
        "stage",
        "--work-dir",
        "work_stage",
        *threads,
        "--accelerator",
        "cpu",
    )
    step(
        "infer",
        "infer",
        "--data",
        "target.h5ad",
        "--split",
        "split.tsv",
        "--base",
        "base",
        "--adapter",
        "stage",
        "--pairing",
        "pairing.npz",
        "--columns",
        COLUMNS,
        "--out",
        "prediction.h5ad",
        *threads,
        "--accelerator",
        "cpu",
    )
    step(
        "reference",
        "reference",
        "--data",
        "target.h5ad",
        "--split",
        "split.tsv",
        "--columns",
        COLUMNS,
        "--out",
        "reference.npz",
    )
    step(
        "evaluate",
        "evaluate",
        "--data",
        "target.h5ad",
        "--split",
        "split.tsv",
        "--reference",
        "reference.npz",
        "--predicted",
        "prediction.h5ad",
        "--columns",
        COLUMNS,
        "--settings",
        json.dumps({"profile": "anndata"}),
        "--out",
        "metrics.tsv",
        "--out-matching",
        "matching.json",
        *threads,
    )

    summary = json.loads((work / "preprocess.json").read_text())
    stage_summary = json.loads((work / "stage" / "summary.json").read_text())
    metrics = pd.read_csv(work / "metrics.tsv", sep="\t")
    csr = csr_bytes(work / "target.h5ad")
    result = {
        "n_cells": summary["n_cells_target"],
        "n_genes": summary["n_genes"],
        "n_controls": summary["n_controls_target"],
        "n_perturbations": int(len(split)),
        "n_test_perturbations": int((split["split"] == "test").sum()),
        "n_test_cells": int(split.loc[split["split"] == "test", "n_cells"].sum()),
        "nonzero_fraction": round(csr / 8 / (summary["n_cells_target"] * summary["n_genes"]), 4),
        "csr_bytes": csr,
        **step.figures,
        "finetune_steps": stage_summary["steps"],
        "cells_per_step": batch,
        "pearson_delta_mean": round(float(metrics["pearson_delta"].mean()), 4),
        **prediction_writes(work / "prediction.h5ad", work),
        "threads": THREADS,
        "machine": describe(),
    }
    for name in ("finetune", "infer", "evaluate"):
        result[f"{name}_rss_vs_csr"] = round(result[f"{name}_rss_bytes"] / csr, 3)
    result["targets"] = TARGETS
    result["targets_met"] = {key: result[key] <= limit for key, limit in TARGETS.items()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=True)


if __name__ == "__main__":
    main()
