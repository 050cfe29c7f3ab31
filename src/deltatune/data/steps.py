"""The data step's entry points, files in and files out: what the ``simulate``, ``check_obs`` and
``preprocess`` rules run, callable without Snakemake (the ``genes`` rule reads a model:
:func:`deltatune.model.steps.genes_file`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..files import write_h5ad, write_json, write_tsv
from ..settings import Columns, PreprocessSettings, ScreenSpec
from .genes import read_gene_list
from .obs import screen_cells
from .preprocess import preprocess_file
from .readers import open_backed
from .simulate import write_screen
from .simulate_plates import write_plates

log = logging.getLogger(__name__)


def simulate_file(out: str | Path, spec: ScreenSpec = ScreenSpec()) -> int:
    """Simulate a Tahoe-like screen of raw counts into ``out`` (.h5ad); return its cell count."""
    n_cells = write_screen(spec, out)
    log.info("simulated %d cells x %d genes", n_cells, spec.n_genes)
    return n_cells


def simulate_plate_files(out_dir: str | Path, spec: ScreenSpec, plates: Sequence[int] | None = None) -> list[Path]:
    """Simulate a screen in Tahoe-100M's layout (``spec.plate_files`` set) into ``out_dir``, one
    .h5ad of raw counts per plate (``plate1.h5ad`` ...; ``plates``: only these, numbered from 1)."""
    paths = write_plates(spec, out_dir, plates)
    log.info("simulated %d plate files x %d genes in %s", len(paths), spec.n_genes, out_dir)
    return paths


def check_obs_file(screen: str | Path, out: str | Path, *, columns: Columns, settings: PreprocessSettings) -> dict:
    """Check a screen's obs (never its expression) and write what was found to ``out`` (.json).

    Every configured column must exist without missing values, the control label must occur, the
    target line must have controls of its own, and ``settings.base_cell_lines`` must exist. The
    summary counts cells by role and the values of every configured column.
    """
    backed = open_backed(screen)
    try:
        obs = backed.obs
        in_target, in_base = screen_cells(obs, columns, settings, str(screen))
        controls = (obs[columns.perturbation].astype(str) == columns.control).to_numpy()
        summary = {
            "n_cells": int(backed.n_obs),
            "n_genes": int(backed.n_vars),
            "n_cells_target": int(in_target.sum()),
            "n_controls_target": int((in_target & controls).sum()),
            "n_cells_base": int(in_base.sum()),
            "values_per_column": {c: int(obs[c].nunique()) for c in columns.required()},
        }
    finally:
        backed.file.close()
    write_json(out, summary)
    return summary


def preprocess_files(
    screen: str | Path,
    *,
    out_base: str | Path,
    out_target: str | Path,
    out_split: str | Path,
    out_summary: str | Path,
    columns: Columns,
    settings: PreprocessSettings,
    genes: str | Path | None = None,
) -> dict:
    """Preprocess a screen file (:func:`~deltatune.data.preprocess.preprocess_file`) into the base
    lines, the target line, the split table and a summary; ``genes`` is a gene list file (a
    checkpoint's, from :func:`genes_file`) that replaces highly-variable-gene selection."""
    result = preprocess_file(str(screen), columns, settings, read_gene_list(genes) if genes else None)
    log.info("preprocess: %s", result.summary)
    write_h5ad(result.base, out_base)
    write_h5ad(result.target, out_target)
    write_tsv(result.split, out_split)
    write_json(out_summary, result.summary)
    return result.summary
