"""``provenance.json``: what a result was made from, so that a co-author can rerun or audit it.

It records the effective configuration (every setting that shapes a result, defaults filled in
by the library's own settings classes: :meth:`deltatune.settings.workflow.WorkflowSettings.effective`;
it validates against the workflow's schema and reruns nothing as ``--configfile``), the seeds,
package versions, the git commit, remote and whether the tree was dirty, the container image
when the step ran in one, sha256 digests of the input files, the machine (CPU model, GPUs and
driver, Python), what made each trained model (:mod:`deltatune.origin`), every snakemake
command that worked on the folder with its profiles and the config as written, and the time
every rule took (from Snakemake's ``benchmark:`` files).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .. import origin
from ..files import sha256

SNAKEMAKE_MARKER = ".snakemake_timestamp"  # Snakemake's mark in directory outputs, not an input


def container(image: str | None, invocations: list[dict] = ()) -> dict | None:
    """The image the step ran in: the workflow's reference (``container.image`` or the lock's),
    the sha256 of a local image file as the latest command that ran in it hashed it (the
    workflow's ``invocations``), and what the runtime reports from inside."""
    names = ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "DELTATUNE_IMAGE")
    runtime = {k: os.environ[k] for k in names if k in os.environ}
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        runtime["oci"] = True
    if not image and not runtime:
        return None
    recorded = [i.get("container") or {} for i in invocations] if image else []  # None: no command ran in one
    hashed = [c["sha256"] for c in recorded if c.get("image") == image]
    return {"image": image, **({"sha256": hashed[-1]} if hashed and hashed[-1] else {}), **runtime}


def input_files(paths: list[str]) -> dict[str, dict]:
    """Size and sha256 of each input file (every screen file), or of every file under an input
    directory (a checkpoint)."""
    record = {}
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != SNAKEMAKE_MARKER)
        else:
            files = [path]
        record.update({str(f): {"bytes": f.stat().st_size, "sha256": sha256(f)} for f in files})
    return record


def rule_times(benchmark_dir: Path) -> dict[str, float]:
    """Wall-clock seconds per job, from the ``benchmark:`` files (rule[/wildcards] -> s)."""
    times = {}
    for tsv in sorted(benchmark_dir.rglob("*.tsv")):
        table = pd.read_csv(tsv, sep="\t")
        times[str(tsv.relative_to(benchmark_dir).with_suffix(""))] = round(float(table["s"].iloc[-1]), 2)
    return times


def device(stage_summaries: dict[str, list[dict]], inference: dict[str, dict]) -> dict:
    """The machine of this step (:func:`deltatune.origin.machine`), and where each stage trained
    and each model predicted: device and CPU threads (run-only settings, recorded by each stage's
    ``summary.json`` and each prediction), for they can change the last bits of a result."""
    replicates = [r for reps in stage_summaries.values() for r in reps]
    gpus = sorted({r["device_name"] for r in replicates if r["device"].startswith("cuda")})
    return {
        **origin.machine(),
        "cuda": ", ".join(gpus) or None,
        "training": {s: sorted({r["device"] for r in reps}) for s, reps in stage_summaries.items()},
        "training_threads": {
            s: sorted({r.get("threads") for r in reps}, key=str) for s, reps in stage_summaries.items()
        },
        "inference": {
            row: {k: info[k] for k in ("device", "threads") if k in info}
            for row, info in inference.items()
            if "device" in info
        },
    }


def made_by(stage_summaries: dict[str, list[dict]], base_config: Path | None) -> dict[str, dict]:
    """What made each trained artifact (:func:`deltatune.origin.made_by`), by name: every stage
    replicate, and a base pretrained in this run (its ``config.yaml``); {} for artifacts written
    before deltatune recorded it."""
    import yaml

    records = {
        f"{stage}/rep{rep}": summary.get("made_by")
        for stage, reps in stage_summaries.items()
        for rep, summary in enumerate(reps)
    }
    if base_config is not None and base_config.is_file():
        records["base"] = (yaml.safe_load(base_config.read_text()) or {}).get("made_by")
    return {name: record for name, record in records.items() if record}
