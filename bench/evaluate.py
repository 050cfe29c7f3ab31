"""Evaluation time of the workflow's ``evaluate`` step against cell-eval alone, on one AnnData pair.

    python bench/evaluate.py [--perturbations 150] [--repeats 3]

Builds a target line (test and training perturbations plus controls, 2,000 genes) and a
prediction for its test perturbations, then times, alternately and in one run, each as a fresh
process on two threads:

* ``rule_s``: ``deltatune evaluate`` as the rule calls it (reads the target line, the prediction
  and Systema's reference, which the ``reference`` rule writes once per run and is made here
  before timing; aligns them, runs cell-eval pooled and per plate, writes the per-perturbation
  table);
* ``cell_eval_s``: cell-eval's ``MetricsEvaluator`` with the same profile on the already aligned
  pair, read from two .h5ad files (import, read, compute, write: nothing of deltatune);
* ``ratio_vs_cell_eval``: median rule time over median cell-eval time (target at most 1.1).

Writes bench/results/evaluate.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from machine import commit, describe

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from deltatune.data.splits import cells_of_split
from deltatune.evaluate.pairs import real_test_cells
from deltatune.predict.prediction import Prediction
from deltatune.settings import Columns, to_dict

N_GENES = 2000
CELLS_PER_PERTURBATION = 60
CONTROLS = 3000
PLATES = 6
THREADS = 2

CELL_EVAL_ALONE = textwrap.dedent(
    """
    import sys, tempfile
    import anndata as ad
    from cell_eval import MetricsEvaluator
    real, pred = ad.read_h5ad(sys.argv[1]), ad.read_h5ad(sys.argv[2])
    with tempfile.TemporaryDirectory() as outdir:
        evaluator = MetricsEvaluator(adata_pred=pred, adata_real=real, control_pert=sys.argv[3],
                                     pert_col=sys.argv[4], num_threads=int(sys.argv[5]), outdir=outdir,
                                     skip_de=True)
        results, _ = evaluator.compute(profile="anndata", write_csv=False)
    results.to_pandas().to_csv(sys.argv[6], sep="\\t", index=False)
    """
)


def build(n_test: int, columns: Columns, rng: np.random.Generator) -> tuple[ad.AnnData, pd.DataFrame, ad.AnnData]:
    """A log1p target line with ``n_test`` test and as many training perturbations, and a prediction."""
    labels = [f"drug{i:04d}" for i in range(2 * n_test)]
    perturbation = np.concatenate([np.repeat(labels, CELLS_PER_PERTURBATION), np.repeat(columns.control, CONTROLS)])
    n = len(perturbation)
    effects = rng.normal(0, 0.3, (len(labels) + 1, N_GENES)) * (rng.random((len(labels) + 1, N_GENES)) < 0.1)
    effects[-1] = 0
    codes = np.concatenate([np.repeat(np.arange(len(labels)), CELLS_PER_PERTURBATION), np.full(CONTROLS, len(labels))])
    rate = np.exp(rng.normal(0, 1, N_GENES)[None, :] + effects[codes])
    X = np.log1p(rng.poisson(rate)).astype(np.float32)
    obs = pd.DataFrame(
        {
            columns.perturbation: perturbation,
            columns.cell_type: "line",
            columns.batch: rng.integers(0, PLATES, n).astype(str),
        },
        index=[f"cell{i}" for i in range(n)],
    )
    target = ad.AnnData(sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(N_GENES)]))
    split = pd.DataFrame({"perturbation": labels, "split": ["test"] * n_test + ["train"] * n_test})
    test = np.flatnonzero(cells_of_split(obs, columns, split, "test"))
    with Prediction(target, test, columns) as writer:
        writer.append(np.clip(X[test] + rng.normal(0, 0.3, (len(test), N_GENES)), 0, None).astype(np.float32))
        prediction = writer.finish({"mode": "bench"})
    return target, split, prediction


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--perturbations", type=int, default=150, help="test perturbations")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "evaluate.json"))
    args = parser.parse_args()

    columns = Columns(batch="plate", drug=None, dose=None)
    target, split, prediction = build(args.perturbations, columns, np.random.default_rng(0))
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        work = Path(tmp)
        target.write_h5ad(work / "target.h5ad", compression="gzip")
        prediction.write_h5ad(work / "prediction.h5ad", compression="gzip")
        split.to_csv(work / "split.tsv", sep="\t", index=False)
        real = real_test_cells(target, split, columns)
        pred = prediction[real.obs_names].copy()
        real.write_h5ad(work / "real.h5ad", compression="gzip")
        pred.write_h5ad(work / "pred.h5ad", compression="gzip")

        deltatune = str(Path(sys.executable).parent / "deltatune")
        data = [
            "--data",
            str(work / "target.h5ad"),
            "--split",
            str(work / "split.tsv"),
            "--columns",
            json.dumps(to_dict(columns)),
        ]
        subprocess.run([deltatune, "reference", *data, "--out", str(work / "reference.npz")], check=True)
        rule = [
            deltatune,
            "evaluate",
            *data,
            "--reference",
            str(work / "reference.npz"),
            "--predicted",
            str(work / "prediction.h5ad"),
            "--settings",
            '{"profile": "anndata"}',
            "--out",
            str(work / "rule.tsv"),
            "--out-matching",
            str(work / "matching.json"),
            "--threads",
            str(THREADS),
        ]
        alone = [
            sys.executable,
            "-c",
            CELL_EVAL_ALONE,
            str(work / "real.h5ad"),
            str(work / "pred.h5ad"),
            columns.control,
            columns.perturbation,
            str(THREADS),
            str(work / "alone.tsv"),
        ]
        rule_s, alone_s = [], []
        for _ in range(args.repeats):
            rule_s.append(timed(rule))
            alone_s.append(timed(alone))
        same = np.allclose(
            pd.read_csv(work / "rule.tsv", sep="\t")["pearson_delta"],
            pd.read_csv(work / "alone.tsv", sep="\t")["pearson_delta"],
        )

    result = {
        "cells": int(target.n_obs),
        "genes": N_GENES,
        "test_perturbations": args.perturbations,
        "threads": THREADS,
        "rule_s": round(float(np.median(rule_s)), 2),
        "cell_eval_s": round(float(np.median(alone_s)), 2),
        "ratio_vs_cell_eval": round(float(np.median(rule_s) / np.median(alone_s)), 3),
        "same_scores": bool(same),
        "runs_s": {"rule": [round(t, 2) for t in rule_s], "cell_eval": [round(t, 2) for t in alone_s]},
        "commit": commit(Path(__file__).parent),
        "machine": describe(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
