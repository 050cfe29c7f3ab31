"""From a raw screen to model-ready data: validation, log-normalization, gene selection, split.

The fine-tuning cell line is held out from the base model's lines, and its perturbations are
split into train / val / test by a unit (a drug with all its doses, by default) so that a drug
seen in fine-tuning at one dose is never scored at another.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from ..errors import InputDataError
from ..settings import Columns, PreprocessSettings
from .genes import MEASURED, match_genes, use_var_column
from .obs import screen_cells
from .readers import open_backed, read_rows
from .splits import SPLITS, split_perturbations

TARGET_SUM = 1e4
MAX_LOG1P_VALUE = 30.0


@dataclass
class Preprocessed:
    """The outputs of :func:`preprocess`."""

    base: ad.AnnData
    target: ad.AnnData
    split: pd.DataFrame
    summary: dict


def _matrix_values(X) -> np.ndarray:
    """The stored values of a dense or sparse matrix, as a flat array (no copy when possible)."""
    return X.data if sp.issparse(X) else np.asarray(X).ravel()


def detect_scale(X) -> str:
    """Say whether ``X`` holds raw ``"counts"`` or ``"log1p"`` data; reject anything else.

    Counts are non-negative integers; log1p data is non-negative and small. Large non-integer
    values (CPM, TPM without log) are rejected because every metric downstream assumes log1p.
    """
    values = _matrix_values(X)
    if not np.isfinite(values).all():
        raise InputDataError(f"X holds {int((~np.isfinite(values)).sum())} NaN or infinite value(s)")
    if values.size and values.min() < 0:
        raise InputDataError(f"X holds negative values (min {values.min():.3g}): expected counts or log1p")
    if np.array_equal(values, np.round(values)):
        return "counts"
    if values.size and values.max() > MAX_LOG1P_VALUE:
        raise InputDataError(
            f"X holds non-integer values up to {values.max():.3g}: neither raw counts nor "
            "log1p-normalized data; give raw counts or log1p(normalized) values"
        )
    return "log1p"


def log_normalize(adata: ad.AnnData) -> str:
    """Normalize counts to :data:`TARGET_SUM` per cell and log1p in place; keep log1p data."""
    scale = detect_scale(adata.X)
    if scale == "counts":
        sc.pp.normalize_total(adata, target_sum=TARGET_SUM)
        sc.pp.log1p(adata)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    return scale


def select_genes(adata: ad.AnnData, n_top_genes: int) -> ad.AnnData:
    """Keep the ``n_top_genes`` most variable genes (scanpy's seurat flavor on log1p data)."""
    if n_top_genes >= adata.n_vars:
        return adata
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes, flavor="seurat")
    return adata[:, adata.var["highly_variable"].to_numpy()].copy()


def preprocess(
    adata: ad.AnnData,
    columns: Columns,
    settings: PreprocessSettings,
    source: str = "input",
    genes: list[str] | None = None,
) -> Preprocessed:
    """Validate, log-normalize, select genes and split a screen held in memory.

    Like scanpy's ``pp`` functions it normalizes ``adata`` in place. The target cell line becomes
    ``target`` (its controls and all its perturbations); the other lines become ``base``, the
    data a base model is pretrained on. ``genes`` (a checkpoint's gene order) replaces the
    highly-variable-gene selection: the data is put in that order by name.
    """
    adata = use_var_column(adata, settings.var_names, source)
    in_target, in_base = screen_cells(adata.obs, columns, settings, source)
    keep = in_target | in_base
    if not keep.all():
        adata, in_target = adata[keep].copy(), in_target[keep]
    is_control = (adata.obs[columns.perturbation].astype(str) == columns.control).to_numpy()
    scale = log_normalize(adata)
    if genes is None:
        adata = select_genes(adata, settings.n_top_genes)
    else:
        adata = match_genes(adata, genes, settings.max_missing_genes, source)
    split = split_perturbations(adata.obs[in_target], columns, settings.split)
    target = adata[in_target].copy()
    base = adata[~in_target].copy()
    summary = {
        "input_scale": scale,
        "normalization": f"normalize_total({TARGET_SUM:g}) + log1p" if scale == "counts" else "none (already log1p)",
        "n_genes": int(adata.n_vars),
        "genes": "highly variable" if genes is None else "the base model's",
        "n_genes_missing": 0 if genes is None else int((~adata.var[MEASURED]).sum()),
        "n_cells_target": int(target.n_obs),
        "n_cells_base": int(base.n_obs),
        "n_controls_target": int((in_target & is_control).sum()),
        "perturbations_per_split": split["split"].value_counts().reindex(SPLITS, fill_value=0).to_dict(),
    }
    return Preprocessed(base=base, target=target, split=split, summary=summary)


def preprocess_file(
    path: str, columns: Columns, settings: PreprocessSettings, genes: list[str] | None = None
) -> Preprocessed:
    """:func:`preprocess` for an .h5ad on disk, validating obs before any expression is read.

    X is streamed in row chunks (:mod:`deltatune.data.readers`), so memory stays near the size of
    the cells kept rather than of the file.
    """
    backed = open_backed(path)
    try:
        in_target, in_base = screen_cells(backed.obs, columns, settings, str(path))
        adata = read_rows(backed, np.flatnonzero(in_target | in_base))
    finally:
        backed.file.close()
    return preprocess(adata, columns, settings, source=str(path), genes=genes)
