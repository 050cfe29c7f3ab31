"""``provenance.json``: what a result was made from, so that a co-author can rerun or audit it.

It records the effective configuration (every setting, defaults filled in by the library's own
settings classes), the seeds, package versions, the git commit and whether the tree was dirty,
the container image when the step ran in one, sha256 digests of the input files, the device and
the time every rule took (from Snakemake's ``benchmark:`` files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from .checkpoint import CheckpointSettings
from .evaluate import EvaluateSettings
from .finetune import StageSettings
from .infer import InferenceSettings
from .model import Architecture
from .perturbations import PerturbationSettings
from .preprocess import PreprocessSettings
from .settings import from_mapping, to_dict
from .simulate import ScreenSpec
from .statistics import BootstrapSettings
from .training import TrainSettings

SNAKEMAKE_MARKER = ".snakemake_timestamp"  # Snakemake's mark in directory outputs, not an input
PACKAGES = (
    "deltatune", "arc-state", "torch", "peft", "lightning", "cell-eval", "anndata", "scanpy",
    "numpy", "scipy", "pandas", "polars", "geomloss", "snakemake", "matplotlib",
)


def effective_config(config: dict, stages: dict[str, dict]) -> dict:
    """``config`` with every section's defaults filled in; ``stages`` has ``extends`` resolved."""
    data, model = config["data"], config["base_model"]
    preprocess = {"target_cell_line": data["target_cell_line"], "var_names": data.get("var_names"), **config.get("preprocess", {})}
    given = bool(model.get("checkpoint"))
    checkpoint = {f.name: model[f.name] for f in dataclasses.fields(CheckpointSettings) if f.name in model}
    return {
        "run": config["run"],
        "replicates": config.get("replicates", 1),
        "data": {
            **data,
            "simulate": to_dict(from_mapping(ScreenSpec, data.get("simulate"), "simulate")) if not data.get("path") else None,
        },
        "preprocess": to_dict(from_mapping(PreprocessSettings, preprocess, "preprocess")),
        "base_model": {
            "checkpoint": model.get("checkpoint"),
            **(to_dict(from_mapping(CheckpointSettings, checkpoint, "base_model")) if given else {}),
            **to_dict(from_mapping(PerturbationSettings, {
                "unseen_perturbations": model.get("unseen_perturbations", "error"),
                "combination_separator": data.get("combination_separator"),
            }, "base_model")),
            "architecture": None if given else to_dict(from_mapping(Architecture, model.get("architecture"), "architecture")),
            "pretrain": None if given else to_dict(from_mapping(TrainSettings, model.get("pretrain"), "pretrain")),
        },
        "stages": {name: to_dict(from_mapping(StageSettings, s, f"stages.{name}")) for name, s in stages.items()},
        "inference": to_dict(from_mapping(InferenceSettings, config.get("inference"), "inference")),
        "evaluation": to_dict(from_mapping(EvaluateSettings, config.get("evaluation"), "evaluation")),
        "report": to_dict(from_mapping(BootstrapSettings, config.get("report", {}).get("bootstrap"), "report.bootstrap")),
        "compute": config.get("compute", {}),
    }


def seeds(effective: dict) -> dict:
    """Every seed the run used, replicate offsets applied."""
    reps = range(effective["replicates"])
    simulated = effective["data"]["simulate"]
    return {
        "simulate": simulated["seed"] if simulated else None,
        "split": effective["preprocess"]["split"]["seed"],
        "pretrain": effective["base_model"]["pretrain"]["seed"] if effective["base_model"]["pretrain"] else None,
        "stages": {name: [s["seed"] + r for r in reps] for name, s in effective["stages"].items()},
        "inference": [effective["inference"]["seed"] + r for r in reps],
        "bootstrap": effective["report"]["seed"],
    }


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(repo: Path) -> dict:
    """Commit of the workflow's checkout and whether tracked files differ from it."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def container(image: str | None) -> dict | None:
    """The image the step ran in: the workflow's pinned reference, and what the runtime reports."""
    runtime = {k: os.environ[k] for k in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "DELTATUNE_IMAGE") if k in os.environ}
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        runtime["oci"] = True
    if not image and not runtime:
        return None
    return {"image": image, **runtime}


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def input_digests(paths: list[str]) -> dict[str, str]:
    """sha256 of each input file, or of every file under an input directory (a checkpoint)."""
    digests = {}
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != SNAKEMAKE_MARKER) if path.is_dir() else [path]
        digests.update({str(f): sha256(f) for f in files})
    return digests


def rule_times(benchmark_dir: Path) -> dict[str, float]:
    """Wall-clock seconds per job, from the ``benchmark:`` files (rule[/wildcards] -> s)."""
    times = {}
    for tsv in sorted(benchmark_dir.rglob("*.tsv")):
        table = pd.read_csv(tsv, sep="\t")
        times[str(tsv.relative_to(benchmark_dir).with_suffix(""))] = round(float(table["s"].iloc[-1]), 2)
    return times


def device(training_devices: dict[str, str]) -> dict:
    """The machine of this step, and the device every training step reported."""
    import torch

    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "training": training_devices,
    }
