"""Where a checkpoint's run keeps its files: paths only, no model library.

The workflow's parser reads this (to find the split a checkpoint trained with, an input of
preprocessing), and a host with Snakemake alone must be able to parse the workflow while jobs
run in the container: so the standard library only here, and pyyaml (Snakemake's own) when a
run's ``config.yaml`` is read.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path("checkpoints")
RUN_CONFIG = "config.yaml"


def run_candidates(ckpt: Path) -> list[Path]:
    """The folders a ``.ckpt`` file's run may be: its own, and the one above ``checkpoints/``."""
    return [ckpt.parent] + ([ckpt.parent.parent] if ckpt.parent.name == CHECKPOINTS.name else [])


def recorded_split(location: str | Path) -> Path | None:
    """The split TOML a checkpoint's run trained with, where it can be found; None otherwise.

    The run's ``config.yaml`` records the path (``data.kwargs.toml_config_path``, a path on the
    machine that trained it): that file if it exists here, else a file of that name in the run
    folder or the folder above it (Arc's releases keep ``fewshot/generalization.toml`` beside
    their runs). A run that records none is looked up in its own folder only, and only when it
    holds exactly one ``.toml``: a guess elsewhere could name an unrelated split.
    """
    location = Path(location)
    runs = run_candidates(location) if location.suffix == ".ckpt" else [location]
    run = next((r for r in runs if (r / RUN_CONFIG).is_file()), runs[0])
    recorded = None
    if (run / RUN_CONFIG).is_file():
        import yaml

        values = yaml.safe_load((run / RUN_CONFIG).read_text()) or {}
        recorded = ((values.get("data") or {}).get("kwargs") or {}).get("toml_config_path")
    if recorded:
        candidates = [Path(recorded), run / Path(recorded).name, run.parent / Path(recorded).name]
        return next((c for c in candidates if c.is_file()), None)
    found = sorted(run.glob("*.toml"))
    return found[0] if len(found) == 1 else None
