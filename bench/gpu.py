"""The GPU path on a real GPU: the tiny workflow on the GPU against the CPU, and training throughput
up to the size of arc-state's Tahoe model.

    bench/gpu.sh                      # sets up .venv from the locks, then runs this
    python bench/gpu.py               # on a CUDA machine: writes bench/results/gpu.json
    python bench/gpu.py --rehearse    # anywhere: the throughput part on the CPU at a reduced size

Needs a CUDA GPU (it stops with a message where none is visible), except ``--rehearse``. Parts:

1. **Correctness.** The tiny test config runs through the whole workflow three times, each in its
   own folder and all three at once: on the CPU in fp32 (the reference), on the GPU in fp32, and
   on the GPU with ``precision: bf16-mixed`` for pretraining and every stage. ``comparison.csv``
   of each GPU run is held against the CPU run, score by score (stage, replicate, perturbation,
   metric), on the correlation metrics (``pearson_delta``, ``pearson_delta_matched``: bounded, so
   an absolute difference means the same everywhere). The tolerances are fixed before any GPU run:

   * fp32 within :data:`FP32_TOLERANCE` (0.05). The GPU computes the same float32 arithmetic in a
     different order (cuBLAS kernels, atomics in reductions), so each step differs from the CPU by
     rounding (~1e-7 relative); training a few hundred steps amplifies that but does not move a
     model's ranking of genes, so a per-perturbation correlation should agree to a few hundredths.
   * bf16-mixed within :data:`BF16_TOLERANCE` (0.15). bfloat16 keeps 8 bits of mantissa (about
     4e-3 relative per product), so the trained weights differ from fp32 by far more than
     rounding; the scores should still agree to about a tenth, which is the size of the
     differences between stages the report resolves.

2. **Throughput.** A stage's Trainer against a bare forward/backward loop over batches already on
   the GPU (``bench/train.py``'s measurement), with the peak GPU memory of the stage's run, at
   three sizes (:data:`SIZES`): the demo's (hidden 64, 200 genes, sets of 16), one between
   (hidden 512, 8 layers, 2,000 genes, sets of 64), and arc-state's Tahoe model
   (``model/tahoe_best.yaml``: hidden 1,440, 4 layers of 12 heads, intermediate 4,416, 4 encoder
   and decoder layers, sets of 512, 16 sets a step) on 2,000 genes in bf16-mixed, with LoRA
   adapters and fully fine-tuned.

3. **Projection.** The wall time of the c37 ablation on one such GPU, from the Tahoe size's LoRA
   cells per second and the assumptions of :data:`ABLATION` (written beside the figure).

4. **Writes** ``bench/results/gpu.json`` (``device``, ``fp32_max_abs_diff``, ``bf16_max_abs_diff``,
   per size ``cells_per_s``, ``bare_cells_per_s``, ``ratio_vs_bare``, ``peak_gpu_bytes``;
   ``projected_ablation_hours``, ``commit``) and prints a short table.

``--rehearse`` runs part 2 at the sizes of :data:`REHEARSAL` (the Tahoe shape, scaled down: a
few steps on the CPU) and part 3 from it, and prints the result: a check that the code runs,
never a GPU figure. ``tests/test_gpu.py`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import torch
import yaml
from machine import commit, describe
from train import measure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from deltatune.settings import Architecture, ScreenSpec

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "config" / "tiny.yaml"
FP32_TOLERANCE = 0.05
BF16_TOLERANCE = 0.15
COMPARED = ("pearson_delta", "pearson_delta_matched")
RUNS = {"cpu": ("cpu", "32-true"), "fp32": ("gpu", "32-true"), "bf16": ("gpu", "bf16-mixed")}
TAHOE = Architecture(
    hidden_dim=1440, n_layers=4, n_heads=12, intermediate_dim=4416, encoder_layers=4, decoder_layers=4, cell_set_len=512
)
# Each size: the model, the simulated screen its data come from, genes, cells per step, steps per
# run and the (precision, adaptation) pairs measured.
SIZES = {
    "tiny": {
        "arch": Architecture(),
        "spec": ScreenSpec(plate_programs=4),
        "n_top_genes": 200,
        "batch_cells": 128,
        "steps": 300,
        "runs": (("32-true", "lora"), ("bf16-mixed", "lora")),
    },
    "large": {
        "arch": Architecture(hidden_dim=512, n_layers=8, n_heads=8, cell_set_len=64),
        "spec": ScreenSpec(n_genes=2500, cells_per_well=60, plate_programs=4),
        "n_top_genes": 2000,
        "batch_cells": 512,
        "steps": 200,
        "runs": (("32-true", "lora"), ("bf16-mixed", "lora")),
    },
    "tahoe": {
        "arch": TAHOE,
        "spec": ScreenSpec(n_genes=2500, cells_per_well=60, plate_programs=4),
        "n_top_genes": 2000,
        "batch_cells": 16 * TAHOE.cell_set_len,
        "steps": 60,
        "runs": (("bf16-mixed", "lora"), ("bf16-mixed", "full")),
    },
}
# The Tahoe shape at a size a CPU trains in seconds: what --rehearse measures.
REHEARSAL = {
    "tahoe": {
        "arch": Architecture(
            hidden_dim=96,
            n_layers=2,
            n_heads=12,
            intermediate_dim=296,
            encoder_layers=4,
            decoder_layers=4,
            cell_set_len=32,
        ),
        "spec": ScreenSpec(
            n_genes=120,
            cell_lines=("c12", "c37"),
            plates_per_line=2,
            n_drugs=6,
            cells_per_well=10,
            controls_per_plate=20,
            plate_programs=2,
        ),
        "n_top_genes": 100,
        "batch_cells": 2 * 32,
        "steps": 3,
        "runs": (("bf16-mixed", "lora"), ("bf16-mixed", "full")),
    },
}
# The c37 ablation projected from the Tahoe size's LoRA throughput: every stage trains on the
# line's perturbed training cells (each once per epoch; the padding of short cell sets is left out).
ABLATION = {
    "target_line_cells": 1_500_000,  # c37 is 1-2 million cells of Tahoe-100M
    "perturbed_fraction": 0.95,  # the rest are DMSO controls, inputs rather than targets
    "train_fraction": 0.55,  # the default split: 30% of the drugs for test, 15% for validation
    "epochs": 10,
    "stages": 4,  # lora_random, lora_batch, lora_batch_delta, lora_batch_delta_ext
    "replicates": 3,
}


def projected_ablation_hours(cells_per_s: float) -> float:
    """Hours of training for the ablation of :data:`ABLATION` at ``cells_per_s``."""
    a = ABLATION
    cells = a["target_line_cells"] * a["perturbed_fraction"] * a["train_fraction"]
    return a["stages"] * a["replicates"] * a["epochs"] * cells / cells_per_s / 3600


def throughput(sizes: dict, accelerator: str, repeats: int) -> dict:
    """``bench/train.py``'s measurement for every size and (precision, adaptation) pair."""
    results = {}
    for name, size in sizes.items():
        data = {k: size[k] for k in ("arch", "spec", "n_top_genes", "batch_cells", "steps")}
        for precision, adaptation in size["runs"]:
            key = f"{name}_{adaptation}_{precision.split('-')[0]}"
            results[key] = measure(
                accelerator=accelerator, precision=precision, adaptation=adaptation, repeats=repeats, **data
            )
    return results


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
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(folder),
            "--cores",
            "4",
            "--configfile",
            str(folder / "config.yaml"),
            "--quiet",
            "rules",
        ],
        check=True,
        env=env,
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
    parser.add_argument("--rehearse", action="store_true", help="the throughput part on the CPU at a reduced size")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each measurement; the best counts")
    parser.add_argument("--out", help="JSON to write (default: bench/results/gpu.json; printed only when rehearsing)")
    args = parser.parse_args()
    if args.rehearse:
        result = {"device": "cpu (a rehearsal: no GPU figure)", **throughput(REHEARSAL, "cpu", repeats=1)}
        result["projected_ablation_hours"] = round(
            projected_ablation_hours(result["tahoe_lora_bf16"]["cells_per_s"]), 2
        )
        result |= {"ablation_assumptions": ABLATION, "commit": commit(REPO), "machine": describe()}
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        json.dump(result, sys.stdout, indent=2)
        return
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU, and torch sees none (torch.cuda.is_available() is False)")

    with tempfile.TemporaryDirectory(prefix="deltatune-gpu-") as tmp, ThreadPoolExecutor(len(RUNS)) as pool:
        runs = {name: pool.submit(tiny_run, Path(tmp) / name, *run) for name, run in RUNS.items()}
        scores = {name: run.result() for name, run in runs.items()}
    fp32 = max_abs_diff(scores["cpu"], scores["fp32"])
    bf16 = max_abs_diff(scores["cpu"], scores["bf16"])
    measured = throughput(SIZES, "gpu", args.repeats)
    result = {
        "device": torch.cuda.get_device_name(0),
        "fp32_max_abs_diff": round(fp32, 5),
        "fp32_tolerance": FP32_TOLERANCE,
        "fp32_within_tolerance": fp32 <= FP32_TOLERANCE,
        "bf16_max_abs_diff": round(bf16, 5),
        "bf16_tolerance": BF16_TOLERANCE,
        "bf16_within_tolerance": bf16 <= BF16_TOLERANCE,
        "compared_metrics": list(COMPARED),
        **measured,
        "projected_ablation_hours": round(projected_ablation_hours(measured["tahoe_lora_bf16"]["cells_per_s"]), 2),
        "ablation_assumptions": ABLATION,
        "commit": commit(REPO),
        "machine": describe(),
    }
    Path(args.out or REPO / "bench" / "results" / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'device':<24}{result['device']}")
    print(f"{'fp32 vs CPU':<24}{fp32:.4f} (tolerance {FP32_TOLERANCE})")
    print(f"{'bf16 vs CPU':<24}{bf16:.4f} (tolerance {BF16_TOLERANCE})")
    print(f"{'size':<24}{'cells/s':>12}{'bare cells/s':>14}{'ratio':>8}{'peak GiB':>10}")
    for name, row in measured.items():
        peak = (row["peak_gpu_bytes"] or 0) / 2**30
        print(
            f"{name:<24}{row['cells_per_s']:>12.0f}{row['bare_cells_per_s']:>14.0f}{row['ratio_vs_bare']:>8.3f}{peak:>10.1f}"
        )
    print(f"{'c37 ablation':<24}{result['projected_ablation_hours']:.1f} h ({ABLATION})")


if __name__ == "__main__":
    main()
