"""The model's entry point for the ``genes`` rule, file in and file out: a checkpoint's gene order,
which preprocessing puts the data in. torch and arc-state are imported when it is called."""

from __future__ import annotations

import logging
from pathlib import Path

from ..files import write_text
from ..settings import CheckpointSettings

log = logging.getLogger(__name__)


def genes_file(
    base: str | Path, out: str | Path, *, checkpoint: CheckpointSettings = CheckpointSettings()
) -> list[str]:
    """Check a base model (an ST run directory) and write its gene list, one per line, in its order."""
    from .checkpoint import load_base_model

    model = load_base_model(base, checkpoint)
    log.info("base model %s: %d genes, %d perturbations", base, len(model.genes), len(model.perturbations))
    write_text(out, "\n".join(model.genes) + "\n")
    return model.genes
