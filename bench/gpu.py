"""The GPU path on a real GPU: the tiny workflow on the GPU against the CPU, and training throughput.

    bench/gpu.sh                      # sets up .venv from the locks, then runs this
    python bench/gpu.py [--steps 300]

Needs a CUDA GPU (it stops with a message where none is visible). Three parts:

1. **Correctness.** The tiny test config runs through the whole workflow three times, each in its
   own folder: on the CPU in fp32 (the reference), on the GPU in fp32, and on the GPU with
   ``precision: bf16-mixed`` for pretraining and every stage. ``comparison.csv`` of each GPU run
   is held against the CPU run, score by score (stage, replicate, perturbation, metric), on the
   correlation metrics (``pearson_delta``, ``pearson_delta_matched``: bounded, so an absolute
   difference means the same everywhere). The tolerances are fixed before any GPU run:

   * fp32 within :data:`FP32_TOLERANCE` (0.05). The GPU computes the same float32 arithmetic in a
     different order (cuBLAS kernels, atomics in reductions), so each step differs from the CPU by
     rounding (~1e-7 relative); training a few hundred steps amplifies that but does not move a
     model's ranking of genes, so a per-perturbation correlation should agree to a few hundredths.
   * bf16-mixed within :data:`BF16_TOLERANCE` (0.15). bfloat16 keeps 8 bits of mantissa (about
     4e-3 relative per product), so the trained weights differ from fp32 by far more than
     rounding; the scores should still agree to about a tenth, which is the size of the
     differences between stages the report resolves.

2. **Throughput.** A stage's Trainer against a bare forward/backward loop over batches already on
   the GPU (``bench/train.py``'s measurement), at the demo's size (hidden 64, 200 genes, sets of
   16) and at a size that uses the GPU (hidden 512, 8 layers, 2,000 genes, sets of 64, 512 cells a
   step), both in fp32 and in bf16-mixed.

3. **Writes** ``bench/results/gpu.json`` (``device``, ``fp32_max_abs_diff``, ``bf16_max_abs_diff``,
   per size ``cells_per_s``, ``bare_cells_per_s``, ``ratio_vs_bare``) and prints a short table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
import yaml
from machine import describe
from train import measure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from deltatune.settings import Architecture, ScreenSpec

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "config" / "tiny.yaml"
FP32_TOLERANCE = 0.05
BF16_TOLERANCE = 0.15
COMPARED = ("pearson_delta", "pearson_delta_matched")
RUNS = {"cpu": ("cpu", "32-true"), "fp32": ("gpu", "32-true"), "bf16": ("gpu", "bf16-mixed")}
SIZES = {
    "tiny": {"arch": Architecture(), "spec": ScreenSpec(plate_programs=4), "n_top_genes": 200, "batch_cells": 128},
    "large": {
        "arch": Architecture(hidden_dim=512, n_layers=8, n_heads=8, cell_set_len=64),
        "spec": ScreenSpec(n_genes=2500, cells_per_well=60, plate_programs=4),
        "n_top_genes": 2000,
        "batch_cells": 512,
    },
}


def tiny_run(folder: Path, accelerator: str, precision: str) -> pd.DataFrame:
    """The tiny config through the whole workflow on ``accelerator``; its comparison.csv."""
    config = yaml.safe_load(TINY.read_text())
    config["compute"] = {**config.get("compute", {}), "accelerator": accelerator}
    config["base_model"]["pretrain"]["precision"] = precision
    for stage in config["stages"].values():
        stage["precision"] = precision
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(folder),
         "--cores", "4", "--configfile", str(folder / "config.yaml"), "--quiet", "rules"],
        check=True, env=env,
    )
    return pd.read_csv(folder / "results" / config["run"] / "report" / "comparison.csv")


def max_abs_diff(reference: pd.DataFrame, other: pd.DataFrame) -> float:
    """Largest absolute difference of the compared scores, matched by stage, replicate, perturbation, metric."""
    keys = ["stage", "replicate", "perturbation", "metric"]
    ref = reference[reference["metric"].isin(COMPARED)].set_index(keys)["value"]
    oth = other[other["metric"].isin(COMPARED)].set_index(keys)["value"]
    if set(ref.index) != set(oth.index):
        raise SystemExit("the GPU run scored other rows than the CPU run")
    return float((ref - oth.reindex(ref.index)).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per throughput run")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU, and torch sees none (torch.cuda.is_available() is False)")

    with tempfile.TemporaryDirectory(prefix="deltatune-gpu-") as tmp:
        scores = {name: tiny_run(Path(tmp) / name, *run) for name, run in RUNS.items()}
    fp32 = max_abs_diff(scores["cpu"], scores["fp32"])
    bf16 = max_abs_diff(scores["cpu"], scores["bf16"])

    throughput = {
        f"{size}_{precision}": measure(steps=args.steps, accelerator="gpu", precision=precision, **kwargs)
        for size, kwargs in SIZES.items()
        for precision in ("32-true", "bf16-mixed")
    }
    result = {
        "device": torch.cuda.get_device_name(0),
        "fp32_max_abs_diff": round(fp32, 5),
        "fp32_tolerance": FP32_TOLERANCE,
        "fp32_within_tolerance": fp32 <= FP32_TOLERANCE,
        "bf16_max_abs_diff": round(bf16, 5),
        "bf16_tolerance": BF16_TOLERANCE,
        "bf16_within_tolerance": bf16 <= BF16_TOLERANCE,
        "compared_metrics": list(COMPARED),
        **throughput,
        "machine": describe(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'device':<24}{result['device']}")
    print(f"{'fp32 vs CPU':<24}{fp32:.4f} (tolerance {FP32_TOLERANCE})")
    print(f"{'bf16 vs CPU':<24}{bf16:.4f} (tolerance {BF16_TOLERANCE})")
    print(f"{'size':<24}{'cells/s':>12}{'bare cells/s':>14}{'ratio':>8}")
    for name, row in throughput.items():
        print(f"{name:<24}{row['cells_per_s']:>12.0f}{row['bare_cells_per_s']:>14.0f}{row['ratio_vs_bare']:>8.3f}")


if __name__ == "__main__":
    main()
