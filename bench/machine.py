"""A description of the machine and the commit a benchmark ran on, for bench/results/*.json."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            kib = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        return round(kib / 2**20, 1)
    except (OSError, StopIteration):
        return None


def _gpu() -> str | None:
    """The GPU's name when the benchmark uses torch and CUDA is visible (torch is not imported for this)."""
    torch = sys.modules.get("torch")
    return torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None


def describe() -> dict:
    """CPU model and count, memory, OS and Python: enough to compare runs on like machines."""
    return {
        "cpu": _cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpu": _gpu(),
    }


def commit(folder: str | Path) -> str:
    """The commit checked out in ``folder`` (a clone, or this repository)."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True)
    return done.stdout.strip()
