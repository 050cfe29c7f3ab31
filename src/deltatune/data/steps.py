"""The data step's entry points, files in and files out: what the ``simulate``, ``check_obs`` and
``preprocess`` rules run, callable without Snakemake (the ``genes`` rule reads a model:
:func:`deltatune.model.steps.genes_file`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..files import write_json, write_tsv
from ..settings import Columns, PreprocessSettings, ScreenSpec
from .genes import read_gene_list
from .leakage import leakage
from .obs import Census, cell_roles, check_columns, kept_cells
from .preprocess import preprocess_screen
from .screen import read_obs_var
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


def check_obs_file(
    screen: str | Path | Sequence[str | Path], out: str | Path, *, columns: Columns, settings: PreprocessSettings
) -> dict:
    """Check a screen's obs (never its expression), file by file, and write what was found to
    ``out`` (.json).

    Every configured column must exist in every file without missing values, the control label
    must occur, the target line must have controls of its own, and ``settings.base_cell_lines``
    must exist, all among the cells ``settings.keep_cells`` keeps. The summary counts cells by
    role, the cells left out, and the values of every configured column.
    """
    paths = _paths(screen)
    census, values, n_genes, n_cells = Census(), {c: set() for c in columns.required()}, set(), 0
    for path in paths:
        obs, var = read_obs_var(path)
        n_cells += len(obs)
        check_columns(obs, columns, str(path))
        kept = kept_cells(obs, settings.keep_cells, str(path))
        census.add(obs, cell_roles(obs, columns, settings, kept), columns, kept)
        for name, seen in values.items():
            seen |= set(obs[name].unique())
        n_genes.add(len(var))
    census.check(columns, settings, str(paths[0]) if len(paths) == 1 else f"the {len(paths)} screen files")
    summary = {
        "n_files": len(paths),
        "n_cells": n_cells,
        "n_genes": max(n_genes),
        "n_cells_target": census.n_target,
        "n_controls_target": census.n_target_controls,
        "n_cells_base": census.n_base,
        "n_cells_left_out": census.n_left_out,
        "values_per_column": {name: len(seen) for name, seen in values.items()},
    }
    write_json(out, summary)
    return summary


def preprocess_files(
    screen: str | Path | Sequence[str | Path],
    *,
    out_base: str | Path,
    out_target: str | Path,
    out_split: str | Path,
    out_summary: str | Path,
    columns: Columns,
    settings: PreprocessSettings,
    genes: str | Path | None = None,
    base_split: str | Path | None = None,
) -> dict:
    """Preprocess a screen, one file or several (:func:`~deltatune.data.preprocess.preprocess_screen`),
    into the base lines, the target line, the split table and a summary; ``genes`` is a gene list
    file (a checkpoint's, from :func:`~deltatune.model.steps.genes_file`) that replaces
    highly-variable-gene selection. ``base_split`` is the split TOML a checkpoint trained with
    (:func:`~deltatune.model.release.recorded_split`): the summary's ``leakage`` then says which
    test perturbations of the target line it may have seen (None: nothing recorded)."""
    split, summary = preprocess_screen(
        _paths(screen), columns, settings, out_target, out_base, read_gene_list(genes) if genes else None
    )
    summary["leakage"] = leakage(base_split, settings.target_cell_line, split) if base_split else None
    seen = (summary["leakage"] or {}).get("test_perturbations_seen")
    if seen:
        log.warning(
            "the checkpoint's split (%s) did not hold out %d of the %d test perturbations of %s: it may have "
            "trained on them; the report says so",
            base_split, len(seen), summary["leakage"]["n_test_perturbations"], settings.target_cell_line,
        )  # fmt: skip
    log.info("preprocess: %s", summary)
    write_tsv(split, out_split)
    write_json(out_summary, summary)
    return summary


def _paths(screen: str | Path | Sequence[str | Path]) -> list[str | Path]:
    """One screen file, or several."""
    return [screen] if isinstance(screen, str | Path) else list(screen)
