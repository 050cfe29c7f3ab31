"""From a raw screen to model-ready data: validation, log-normalization, gene selection, split.

The fine-tuning cell line is held out from the base model's lines, and its perturbations are
split into train / val / test by a unit (a drug with all its doses, by default) so that a drug
seen in fine-tuning at one dose is never scored at another.

A screen is one or more inputs (:mod:`deltatune.data.screen`) read in three passes, so memory
follows the output rather than the input: obs of every input (checks, the cells kept, the split,
which needs nothing else), then the training cells' expression in row chunks for the per-gene
sums of highly-variable-gene selection (:mod:`deltatune.data.hvg`; skipped when a checkpoint
fixes the genes), then every kept cell in row chunks, normalized
(:mod:`deltatune.data.normalize`), reduced to the chosen genes and appended to the outputs.
Genes are chosen on **training cells only**: the base lines, and the target line's controls
and training perturbations, never a validation or test cell.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from ..errors import InputDataError
from ..settings import Columns, PreprocessSettings
from .genes import GeneSpace, model_genes, shared_genes, take_genes
from .hvg import GeneMoments, seurat_hvg
from .labels import doses_from_labels
from .normalize import COUNTS, NORMALIZATION, ScaleTracker, normalize_block
from .obs import Census, control_labels
from .screen import ScreenPart, open_files, open_memory, sample_base
from .splits import SPLITS, split_perturbations, training_cells
from .writers import H5adRows


@dataclass
class Preprocessed:
    """The outputs of :func:`preprocess`."""

    base: ad.AnnData
    target: ad.AnnData
    split: pd.DataFrame
    summary: dict


@dataclass
class Genes:
    """The genes chosen and their var table."""

    space: GeneSpace
    var: pd.DataFrame
    how: str
    n_cells_selected_on: int = 0


class _InMemory:
    """An output held in memory: the rows appended, as one AnnData when finished."""

    def __init__(self) -> None:
        self.blocks: list[sp.csr_matrix] = []

    def append(self, X: sp.csr_matrix) -> None:
        self.blocks.append(X)

    def finish(self, obs: pd.DataFrame, var: pd.DataFrame) -> None:
        X = sp.vstack(self.blocks, format="csr") if self.blocks else sp.csr_matrix((0, len(var)), dtype=np.float32)
        self.adata = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=obs, var=var)


def preprocess(
    adata: ad.AnnData,
    columns: Columns,
    settings: PreprocessSettings,
    source: str = "input",
    genes: list[str] | None = None,
) -> Preprocessed:
    """Validate, log-normalize, select genes and split a screen held in memory (``adata`` is not
    changed). The target cell line becomes ``target`` (its controls and all its perturbations);
    the other lines become ``base``, the data a base model is pretrained on. ``genes`` (a
    checkpoint's gene order) replaces the highly-variable-gene selection: the data is put in
    that order by name."""
    parts, census = open_memory(adata, columns, settings, source)
    target, base = _InMemory(), _InMemory()
    split, summary = _preprocess(parts, census, columns, settings, genes, target, base)
    return Preprocessed(base=base.adata, target=target.adata, split=split, summary=summary)


def preprocess_screen(
    paths: Sequence[str | Path],
    columns: Columns,
    settings: PreprocessSettings,
    out_target: str | Path,
    out_base: str | Path,
    genes: list[str] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """:func:`preprocess` for screen files on disk, streamed: every input's obs is checked before
    any expression is read, and the target and base lines are written to ``out_target`` and
    ``out_base`` (.h5ad, atomically) a chunk of cells at a time. Returns the split and summary."""
    parts, census = open_files(paths, columns, settings)
    with H5adRows(out_target) as target, H5adRows(out_base) as base:
        split, summary = _preprocess(parts, census, columns, settings, genes, target, base)
    return split, {**summary, "n_input_files": len(parts)}


def _preprocess(
    parts: list[ScreenPart],
    census: Census,
    columns: Columns,
    settings: PreprocessSettings,
    genes: list[str] | None,
    target: _InMemory | H5adRows,
    base: _InMemory | H5adRows,
) -> tuple[pd.DataFrame, dict]:
    """The three passes (module docstring) from the inputs' obs pass to ``target`` and ``base``."""
    parts = sample_base(parts, columns, settings)
    obs = _concat_obs([p.obs for p in parts], [p.source for p in parts])
    if columns.dose_from_label:
        if columns.dose in obs:
            raise InputDataError(
                f"data.columns.dose '{columns.dose}' is already an obs column: name another for the dose "
                "parsed from the labels (dose_from_label), or read this one (dose_from_label: false)"
            )
        obs[columns.dose] = doses_from_labels(obs[columns.perturbation]).to_numpy()
    in_target = np.concatenate([p.in_target for p in parts])
    split = split_perturbations(obs[in_target], columns, settings.split, settings.target_cell_line)
    scale = ScaleTracker()
    chosen = _choose_genes(parts, columns, settings, genes, split, scale)
    _write(parts, chosen.space, scale, target, base)
    target.finish(_rows_of(obs, in_target), chosen.var)
    base.finish(_rows_of(obs, ~in_target), chosen.var)
    is_control = control_labels(obs, columns)
    summary = {
        "input_scale": scale.scale or COUNTS,
        "normalization": NORMALIZATION[scale.scale or COUNTS],
        "n_genes": len(chosen.space.names),
        "genes": chosen.how,
        "n_cells_genes_chosen_on": chosen.n_cells_selected_on,
        "n_genes_missing": int((~chosen.space.measured).sum()),
        "n_cells_target": census.n_target,
        "n_cells_base": int((~in_target).sum()),
        "n_cells_base_available": census.n_base,
        "n_cells_left_out": census.n_left_out,
        "n_controls_target": int((in_target & is_control).sum()),
        "perturbations_per_split": split["split"].value_counts().reindex(SPLITS, fill_value=0).to_dict(),
    }
    return split, summary


def _concat_obs(frames: list[pd.DataFrame], sources: list[str]) -> pd.DataFrame:
    """The kept cells' obs of every input, in input order; columns categorical in any input stay
    categorical. With several inputs every cell name gets ``-<file name>`` appended (as anndata's
    ``concat(index_unique="-")``), whichever cells are kept: barcodes repeat across plates."""
    if len(frames) == 1:
        return frames[0]
    stems = [Path(s).stem for s in sources]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise InputDataError(f"two input files are named {repeated[0]}.h5ad: cell names would repeat")
    obs = pd.concat(
        [frame.set_axis(frame.index.astype(str) + f"-{stem}") for frame, stem in zip(frames, stems, strict=True)]
    )
    for name in obs.columns:
        if any(isinstance(f[name].dtype, pd.CategoricalDtype) for f in frames if name in f):
            obs[name] = obs[name].astype("category")
    return obs


def _rows_of(obs: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """The rows of ``mask``, categories they do not use dropped (as subsetting an AnnData does)."""
    rows = obs[mask].copy()
    for name in rows.columns:
        if isinstance(rows[name].dtype, pd.CategoricalDtype):
            rows[name] = rows[name].cat.remove_unused_categories()
    return rows


def _progress(rows: list[np.ndarray], what: str) -> tqdm:
    """A progress bar over the cells a pass reads (the log of a long read shows how far it is)."""
    return tqdm(
        total=sum(len(r) for r in rows), desc=what, unit="cells", unit_scale=True, file=sys.stderr, mininterval=30.0
    )


def _which(number: int, parts: list[ScreenPart]) -> str:
    """Which input a pass is reading, for its progress bar."""
    return f"file {number + 1}/{len(parts)} {Path(parts[number].source).name}"


def _choose_genes(
    parts: list[ScreenPart],
    columns: Columns,
    settings: PreprocessSettings,
    genes: list[str] | None,
    split: pd.DataFrame,
    scale: ScaleTracker,
) -> Genes:
    """The checkpoint's genes, or the most variable genes of the training cells."""
    own, sources = [p.genes for p in parts], [p.source for p in parts]
    if genes is not None:
        space = model_genes(own, sources, genes, settings.max_missing_genes)
        return Genes(space, space.var(), "the base model's")
    space = shared_genes(own, sources)
    if settings.n_top_genes >= len(space.names):
        return Genes(space, pd.DataFrame(index=pd.Index(space.names, name=own[0].name)), "all")
    moments = GeneMoments(len(space.names))
    rows = [p.rows[~p.in_target | training_cells(p.obs, columns, split)] for p in parts]
    with _progress(rows, "preprocess: genes") as bar:
        for number, (part, chosen, position) in enumerate(zip(parts, rows, space.positions, strict=True)):
            bar.set_postfix_str(_which(number, parts), refresh=False)
            for _, _, block in part.chunks(chosen):
                moments.add(take_genes(normalize_block(block, scale.check(block, part.source)), position))
                bar.update(block.shape[0])
    table = seurat_hvg(moments, settings.n_top_genes)
    keep = table["highly_variable"].to_numpy()
    var = table.loc[keep, ["highly_variable", "means", "dispersions", "dispersions_norm"]]
    var = var.astype({"dispersions_norm": np.float32})  # as scanpy stores it
    var.index = pd.Index(np.asarray(space.names)[keep], name=own[0].name)
    return Genes(space.subset(keep), var, "highly variable in the training cells", moments.n_cells)


def _write(parts: list[ScreenPart], space: GeneSpace, scale: ScaleTracker, target, base) -> None:
    """Every kept cell, normalized and reduced to ``space``'s genes, appended to its output."""
    with _progress([p.rows for p in parts], "preprocess: write") as bar:
        for number, (part, position) in enumerate(zip(parts, space.positions, strict=True)):
            bar.set_postfix_str(_which(number, parts), refresh=False)
            for lo, hi, block in part.chunks(part.rows):
                X = take_genes(normalize_block(block, scale.check(block, part.source)), position)
                in_target = part.in_target[lo:hi]
                target.append(X[in_target])
                base.append(X[~in_target])
                bar.update(hi - lo)
