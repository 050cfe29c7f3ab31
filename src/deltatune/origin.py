"""What made an artifact: the code, the packages and the machine, recorded where it is written.

Every trained model (``summary.json`` of a stage replicate, ``config.yaml`` of a pretrained
base) and the report carry this record, so that a results folder built over several commits,
or on several machines, says so: the report compares the records of its artifacts and warns
when they differ (:func:`mixed_code`). The standard library only: the report imports it
without torch.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "deltatune",
    "arc-state",
    "torch",
    "peft",
    "lightning",
    "cell-eval",
    "anndata",
    "scanpy",
    "numpy",
    "scipy",
    "pandas",
    "polars",
    "geomloss",
    "snakemake",
    "matplotlib",
)
SOURCE = Path(__file__).resolve().parents[2]  # the checkout, when running from src/ (editable install)


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(repo: Path, *args: str) -> str | None:
    """git's output (possibly empty), or None where git fails (no git, not a checkout)."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_state(repo: Path) -> dict:
    """Commit of a checkout, whether tracked files differ from it (None: unknown), and its remote."""
    commit = _git(repo, "rev-parse", "HEAD") or None
    status = _git(repo, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "remote": (_git(repo, "remote", "get-url", "origin") or None) if commit else None,
    }


def code() -> dict:
    """The deltatune that is running: its version, its commit when run from a source checkout
    (an editable install), and the image it runs in (the Dockerfile sets ``DELTATUNE_IMAGE``;
    an installed package has no commit of its own, the image names it)."""
    state = git_state(SOURCE) if (SOURCE / ".git").exists() else {"commit": None, "dirty": None}
    return {
        "deltatune": metadata.version("deltatune"),
        "commit": state["commit"],
        "dirty": state["dirty"],
        "image": os.environ.get("DELTATUNE_IMAGE"),
    }


def cpu_model() -> str:
    """The processor's name (``platform.processor()`` gives only the architecture on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict]:
    """Each NVIDIA GPU's name, memory and driver, from ``nvidia-smi`` (none without one)."""
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[part.strip() for part in line.split(",")] for line in done.stdout.splitlines() if line.strip()]
    return [{"name": r[0], "memory": r[1], "driver": r[2]} for r in rows if len(r) == 3]


def machine() -> dict:
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus(),
    }


def made_by(**extra) -> dict:
    """The record an artifact keeps: code, key package versions, machine, and ``extra`` (the device)."""
    versions = package_versions()
    keep = ("torch", "arc-state", "peft", "lightning", "cell-eval", "numpy")
    return {"code": code(), "packages": {k: versions[k] for k in keep}, "machine": machine(), **extra}


def mixed_code(records: dict[str, dict]) -> dict[str, dict]:
    """The code record of each artifact (name -> :func:`made_by` record) when they differ, else {}."""
    codes = {name: record["code"] for name, record in records.items() if record}
    distinct = {(c["deltatune"], c["commit"], c["dirty"], c.get("image")) for c in codes.values()}
    return codes if len(distinct) > 1 else {}
