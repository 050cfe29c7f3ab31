"""A Tahoe-shaped screen through the whole workflow: every rule's time and peak memory.

    python bench/scale.py [--target-cells 1030000] [--keep DIR]

Snakemake runs of the real workflow (the repository's Snakefile, two cores), in one folder:

1. ``base``: a small screen of the same 20,000 genes and drugs (8 plate files, a few cells per
   well) is simulated, preprocessed (HVG: 2,000 genes on its training cells) and a small State
   Transition base model pretrained on its other lines. Its run directory is the checkpoint of
   the runs below, as a user's ``state tx train`` run would be. Not measured.
2. ``scale``: Tahoe-100M's layout at a million cells, as a Tahoe user runs it. 8 raw-count plate
   files (every line on every plate, about 1,200 genes detected per cell, as Tahoe;
   :mod:`deltatune.data.simulate_plates`; simulated beforehand, not measured, as the download
   is not) with a target line (c37) of about ``--target-cells`` cells (drawn: the default leaves
   room above a million) and two other lines a tenth its size, named by ``data.path``; the
   checkpoint's genes; one stage (batch pairing, delta-aware loss), one replicate, every
   baseline, the ceiling and the report (evaluation profile ``anndata``: no DE), as
   ``snakemake --cores 2`` runs them. Per job: seconds from the benchmark file Snakemake
   writes, and peak RSS both as Snakemake samples it and exactly, as the ``deltatune`` command
   logs it (``ru_maxrss``). A rule with several jobs: its slowest and its largest job.
3. ``files2`` / ``files8``: preprocess alone, on one screen of 8 plate files whose target line is
   on the first two only: first given those two files, then all eight (the six extra ones hold
   other lines only; a digest checks that both runs write the same target line). Preprocess
   memory should follow the output, not the input.

Every measured run starts from an empty results folder.
Writes ``bench/results/scale.json``: ``n_files``, ``n_genes_input``, ``n_cells_input``,
``n_cells_target``, ``csr_bytes`` (the preprocessed target line's CSR X in memory: data, indices,
indptr), per rule ``<rule>_s``, ``<rule>_rss_bytes`` and ``<rule>_rss_vs_csr``, every job's
figures (``jobs``), ``preprocess_rss_2_files`` / ``preprocess_rss_8_files`` (and their inputs),
the targets and whether each was met, the commit, date and machine. Snakemake's max RSS sums the
job's processes (the shell and ``deltatune``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import h5py
import pandas as pd
import yaml
from machine import commit, describe

from deltatune.data.simulate_plates import TAHOE_CELLS, draw_plates
from deltatune.settings import ScreenSpec, from_mapping

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CORES = 2
N_FILES = 8
N_GENES_MODEL = 2000
# The screen: Tahoe's obs names and cells, 60 drugs at 3 doses on 1-3 of 8 plates, two other lines
# a tenth of the target's size; cells per well and controls per plate are sized by --target-cells.
SCREEN = {
    "n_genes": 20000,
    "cell_lines": ["c37", "o1", "o2"],
    "plate_files": N_FILES,
    "n_drugs": 60,
    "doses_um": [0.05, 0.5, 5.0],
    "plates_per_drug": [1, 3],
    "line_abundance": {"o1": 0.1, "o2": 0.1},
    **TAHOE_CELLS,
    "seed": 0,
}
CONTROL_SHARE = 8  # a plate's control well holds 8 drug wells' worth of cells
COLUMNS = {
    "perturbation": "drugname_drugconc",
    "control": "[('DMSO_TF', 0.0, 'uM')]",
    "cell_type": "cell_line",
    "batch": "plate",
    "drug": "drug",
    "dose": "concentration",
}
ARCHITECTURE = {"hidden_dim": 64, "n_layers": 2, "n_heads": 4, "cell_set_len": 16, "loss": "energy"}
STAGE = "lora_batch_delta"
EVALUATION = {"profile": "anndata"}  # no DE: cell-eval's DE metrics are not measured here
TARGET_STEPS = 200  # fine-tuning: one epoch in about this many optimizer steps
TRAIN_SHARE = 0.5  # about this share of the target's cells trains (not controls, val or test)
TARGETS = {"rss_vs_csr": 3.0, "evaluate_s": 900.0, "ceiling_s": 900.0, "preprocess_rss_8_vs_2_files": 1.25}


def stage(target_cells: int) -> dict:
    """The one stage: batch pairing and the delta-aware loss, LoRA on attention, one epoch cut to
    about ``TARGET_STEPS`` optimizer steps (whole cell sets per step)."""
    set_len = ARCHITECTURE["cell_set_len"]
    batch = set_len * max(1, round(target_cells * TRAIN_SHARE / set_len / TARGET_STEPS))
    return {
        STAGE: {
            "pairing": "batch",
            "epochs": 1,
            "batch_size": batch,
            "lr": 1.0e-3,
            "loss": {"base": 1.0, "delta_mse": 0.5, "delta_pearson": 0.3},
            "lora": {"targets": ["backbone_attention"], "rank": 8, "alpha": 16},
        }
    }


def run_config(run: str, data: dict, checkpoint: str | None, target_cells: int) -> dict:
    """A whole config (nothing from config/config.yaml) for ``run``: the screen, Tahoe's columns,
    and the checkpoint, or the small architecture to pretrain when there is none."""
    base_model = {"checkpoint": checkpoint} if checkpoint else {
        "checkpoint": None,
        "architecture": ARCHITECTURE,
        "pretrain": {"epochs": 10, "batch_size": 128, "lr": 1.0e-3, "pairing": "batch_celltype"},
    }  # fmt: skip
    return {
        "run": run,
        "data": {**data, "columns": COLUMNS, "target_cell_line": "c37"},
        "preprocess": {
            "n_top_genes": N_GENES_MODEL,
            "base_cells_per_group": 20,
            "split": {"val_fraction": 0.1, "test_fraction": 0.3, "seed": 0},
        },
        "base_model": base_model,
        "stages": stage(target_cells),
        "replicates": 1,
        "evaluation": EVALUATION,
        "compute": {"train_threads": CORES, "eval_threads": CORES, "accelerator": "cpu"},
    }


def snakemake(work: Path, config: dict, *targets: str) -> None:
    """The repository's workflow on ``config`` in ``work``, on ``CORES`` cores; stops on failure."""
    path = work / f"{config['run']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
               "--configfile", str(path), "--cores", str(CORES), *targets]  # fmt: skip
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    with open(work / f"{config['run']}.snakemake.log", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    print(f"{config['run']}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if done.returncode != 0:
        sys.exit(f"snakemake failed for {config['run']}: see {work / (config['run'] + '.snakemake.log')}")


def sized_screen(target_cells: int, **changes) -> dict:
    """``SCREEN`` with cells per well and controls per plate giving the target line about
    ``target_cells`` cells (its layout is drawn, not its counts: seconds)."""
    spec = {**SCREEN, **changes}
    probe = draw_plates(
        from_mapping(ScreenSpec, {**spec, "cells_per_well": 1000, "controls_per_plate": 1000}, "simulate")
    )
    target = probe.groups[probe.groups["line"] == 0]
    wells = int((target["drug"] >= 0).sum()) + CONTROL_SHARE * int((target["drug"] < 0).sum())
    per_well = round(target_cells / wells)
    return {**spec, "cells_per_well": per_well, "controls_per_plate": CONTROL_SHARE * per_well}


def csr_bytes(path: Path) -> int:
    """Bytes of an .h5ad's CSR X in memory (data, indices, indptr), read from the file's shapes."""
    with h5py.File(path) as f:
        return int(sum(f["X"][part].size * f["X"][part].dtype.itemsize for part in ("data", "indices", "indptr")))


def file_shape(paths: list[Path]) -> tuple[int, int]:
    """Cells (all files) and genes (the first file) of raw .h5ad files, from their shapes."""
    cells = 0
    for path in paths:
        with h5py.File(path) as f:
            cells += int(f["X"].attrs["shape"][0])
            genes = int(f["X"].attrs["shape"][1])
    return cells, genes


PEAK = re.compile(r"finished in [\d.]+ s, peak RSS (\d+) MiB")


def benchmarks(results: Path) -> pd.DataFrame:
    """Every job of a run: rule, job, seconds and max RSS from its Snakemake benchmark file
    (``rss_sampled_bytes``: Snakemake samples memory every 30 s after the first 15 s) and the
    exact peak its ``deltatune`` command logged (``rss_bytes``: the kernel's ``ru_maxrss``)."""
    rows = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        job = path.relative_to(results / "benchmarks").with_suffix("")
        table = pd.read_csv(path, sep="\t")
        sampled = pd.to_numeric(table["max_rss"], errors="coerce").max()  # MiB; "NA" when not sampled
        peak = PEAK.search((results / "logs" / job).with_suffix(".log").read_text())
        if peak is None:
            sys.exit(f"{results / 'logs' / job}.log has no peak RSS line: not a run of this commit's deltatune")
        rows.append(
            {
                "rule": job.parts[0],
                "job": str(job),
                "s": float(table["s"].max()),
                "rss_bytes": int(peak.group(1)) * 2**20,
                "rss_sampled_bytes": None if pd.isna(sampled) else int(sampled * 2**20),
            }
        )
    return pd.DataFrame(rows)


def plate_files(spec: dict, folder: Path) -> list[Path]:
    """The plate files of ``spec`` in ``folder``: simulated there (``deltatune simulate``, not
    measured: it stands for the download), or reused when ``spec.json`` says they are this spec's."""
    record = folder / "spec.json"
    paths = [folder / f"plate{p}.h5ad" for p in range(1, spec["plate_files"] + 1)]
    if not (record.is_file() and json.loads(record.read_text()) == spec and all(p.is_file() for p in paths)):
        record.unlink(missing_ok=True)
        subprocess.run(
            [str(BIN / "deltatune"), "simulate", "--settings", json.dumps(spec), "--out-dir", str(folder)], check=True
        )
        record.write_text(json.dumps(spec))
    return paths


def measured(work: Path, config: dict, *targets: str) -> Path:
    """Run ``config`` afresh (its results folder removed first, so that no figure is left over
    from another run or commit) and return its results folder."""
    results = work / "results" / config["run"]
    shutil.rmtree(results, ignore_errors=True)
    snakemake(work, config, *targets)
    return results


def target_digest(results: Path) -> str:
    """sha256 of a run's target line (cell names, X) and split: equal when two runs wrote the same."""
    digest = hashlib.sha256((results / "data" / "split.tsv").read_bytes())
    with h5py.File(results / "data" / "target_line.h5ad") as f:
        for name in ("data", "indices", "indptr"):
            digest.update(f["X"][name][:].tobytes())
        digest.update("\n".join(f["obs"][f["obs"].attrs["_index"]].asstr()[:]).encode())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target-cells", type=int, default=1_030_000, help="expected target line of the measured run (cells are drawn)"
    )
    parser.add_argument("--files-target-cells", type=int, default=100_000, help="target line of the 2-vs-8-file runs")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one; reruns resume)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "scale.json"))
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="deltatune-scale-"))
    work.mkdir(parents=True, exist_ok=True)

    # 1. The base checkpoint: the same genes and drugs, a few cells per well (not measured).
    small = {**SCREEN, "cells_per_well": 4, "controls_per_plate": 40, "line_abundance": None}
    snakemake(work, run_config("base", {"path": None, "simulate": small}, None, 0), "results/base/models/base")
    checkpoint = str(work / "results" / "base" / "models" / "base")

    # 2. The measured run: the plate files in, every rule a user runs, a report out.
    screen = sized_screen(args.target_cells)
    inputs = plate_files(screen, work / "screen")
    results = measured(work, run_config("scale", {"path": [str(p) for p in inputs]}, checkpoint, args.target_cells))
    jobs = benchmarks(results)
    csr = csr_bytes(results / "data" / "target_line.h5ad")
    summary = json.loads((results / "data" / "preprocess.json").read_text())
    n_cells, n_genes = file_shape(inputs)
    steps = json.loads((results / "models" / STAGE / "rep0" / "summary.json").read_text())
    report = pd.read_csv(results / "report" / "summary.csv")
    per_rule = jobs.groupby("rule").agg(
        s=("s", "max"), rss_bytes=("rss_bytes", "max"), rss_sampled=("rss_sampled_bytes", "max"), n_jobs=("job", "size")
    )
    figures = {}
    for rule, row in per_rule.iterrows():
        figures |= {
            f"{rule}_s": round(row["s"], 1),
            f"{rule}_rss_bytes": int(row["rss_bytes"]),
            f"{rule}_rss_vs_csr": round(row["rss_bytes"] / csr, 3),
            f"{rule}_rss_sampled_bytes": None if pd.isna(row["rss_sampled"]) else int(row["rss_sampled"]),
            f"{rule}_jobs": int(row["n_jobs"]),
        }

    # 3. Preprocess on 2 and on 8 plate files: the target line on the first two plates only.
    files_screen = sized_screen(args.files_target_cells, line_plates={"c37": 2}, line_abundance={"o1": 0.5, "o2": 0.5})
    plates = plate_files(files_screen, work / "files_screen")
    files, digests = {}, set()
    for n in (2, N_FILES):
        inputs = plates[:n]
        done = measured(
            work,
            run_config(f"files{n}", {"path": [str(p) for p in inputs]}, checkpoint, args.files_target_cells),
            f"results/files{n}/data/target_line.h5ad",
        )
        preprocess = benchmarks(done).set_index("rule").loc["preprocess"]
        digests.add(target_digest(done))
        files |= {
            f"preprocess_rss_{n}_files": int(preprocess["rss_bytes"]),
            f"preprocess_s_{n}_files": round(float(preprocess["s"]), 1),
            f"preprocess_input_cells_{n}_files": file_shape(inputs)[0],
            f"preprocess_input_bytes_{n}_files": sum(p.stat().st_size for p in inputs),
            f"preprocess_target_cells_{n}_files": json.loads((done / "data" / "preprocess.json").read_text())[
                "n_cells_target"
            ],
        }
    files["preprocess_rss_8_vs_2_files"] = round(files["preprocess_rss_8_files"] / files["preprocess_rss_2_files"], 3)
    files["preprocess_same_target_2_vs_8_files"] = len(digests) == 1

    rss = {rule: figures[f"{rule}_rss_vs_csr"] for rule in per_rule.index}
    result = {
        "n_files": summary["n_input_files"],
        "n_genes_input": n_genes,
        "n_cells_input": n_cells,
        "n_cells_target": summary["n_cells_target"],
        "n_controls_target": summary["n_controls_target"],
        "perturbations_per_split": summary["perturbations_per_split"],
        "n_cells_base_lines": summary["n_cells_base"],
        "n_genes": summary["n_genes"],
        "csr_bytes": csr,
        "evaluation_profile": EVALUATION["profile"],
        "screen": screen,
        **figures,
        "finetune_steps": steps["steps"],
        "pearson_delta": {
            row.stage: None if pd.isna(row.pearson_delta) else round(row.pearson_delta, 4)
            for row in report.itertuples(index=False)
        },
        **files,
        "jobs": jobs.set_index("job").drop(columns="rule").to_dict(orient="index"),
        "targets": TARGETS,
        "targets_met": {
            "rss_vs_csr": {rule: bool(ratio <= TARGETS["rss_vs_csr"]) for rule, ratio in rss.items()},
            "evaluate_s": bool(figures["evaluate_s"] <= TARGETS["evaluate_s"]),
            "ceiling_s": bool(figures["ceiling_s"] <= TARGETS["ceiling_s"]),
            "preprocess_rss_8_vs_2_files": files["preprocess_rss_8_vs_2_files"]
            <= TARGETS["preprocess_rss_8_vs_2_files"],
        },
        "cores": CORES,
        "commit": commit(REPO),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": describe(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump({k: v for k, v in result.items() if k != "jobs"}, sys.stdout, indent=2)
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
