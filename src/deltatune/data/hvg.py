"""Highly variable genes from per-gene sums gathered block by block (scanpy's seurat flavor).

scanpy's ``highly_variable_genes(flavor="seurat")`` needs only each gene's mean and variance of
``expm1`` of the log1p data; both follow from three running sums (cells, values, squares), so
the selection is made from one streaming pass over any number of files without holding the
matrix. The pass reads **training cells only** (the caller chooses them): a gene space chosen on
test cells' variance would leak the test set into every model.

Checked against scanpy 1.11.5's ``_highly_variable_genes_single_batch`` (and
``preprocessing/_utils.py``'s ``sparse_mean_var_minor_axis``): per-gene sums in float64 of the
float32 values and of their float32 squares; variance ``sumsq/n - mean**2`` times ``n/(n-1)``;
``mean == 0`` set to 1e-12; ``dispersion = var / mean``, zeros to NaN, then ``log`` and
``log1p(mean)``; 20 equal-width bins of the log mean (``pd.cut``); each bin's dispersions
normalized by their mean and standard deviation, a bin of one gene getting ``(d - 0) / mean``;
the top ``n`` by normalized dispersion, NaN last, ties at the cut-off all kept.
``tests/test_hvg.py`` holds the selection equal to scanpy's on the same cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputDataError

N_BINS = 20


class GeneMoments:
    """Running per-gene sums of ``expm1`` of log1p expression over the cells added so far."""

    def __init__(self, n_genes: int) -> None:
        self.n_cells = 0
        self.sums = np.zeros(n_genes)
        self.squares = np.zeros(n_genes)

    def add(self, X: sp.csr_matrix, genes: np.ndarray | None = None) -> None:
        """Add the cells of log1p block ``X``; ``genes`` maps its columns to this tally's genes."""
        values = np.expm1(X.data.astype(np.float32, copy=False))
        columns = X.indices if genes is None else genes[X.indices]
        n = len(self.sums)
        self.sums += np.bincount(columns, weights=values, minlength=n)
        self.squares += np.bincount(columns, weights=values * values, minlength=n)
        self.n_cells += X.shape[0]

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased variance per gene, as scanpy's ``_get_mean_var`` computes them."""
        n = self.n_cells
        mean = self.sums / n
        var = self.squares / n - mean**2
        if n != 1:
            var *= n / (n - 1)
        return mean, var


def seurat_hvg(moments: GeneMoments, n_top_genes: int, n_bins: int = N_BINS) -> pd.DataFrame:
    """scanpy's seurat-flavor table from ``moments``: ``means``, ``dispersions``,
    ``dispersions_norm`` and ``highly_variable`` (the top ``n_top_genes``), one row per gene."""
    if moments.n_cells < 2:
        raise ValueError("highly variable genes need at least 2 cells")
    mean, var = moments.mean_var()
    mean[mean == 0] = 1e-12
    dispersion = var / mean
    dispersion[dispersion == 0] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersion = np.log(dispersion)
    table = pd.DataFrame({"means": np.log1p(mean), "dispersions": dispersion})
    table["mean_bin"] = pd.cut(table["means"], bins=n_bins)
    stats = table.groupby("mean_bin", observed=True)["dispersions"].agg(avg="mean", dev="std")
    alone = stats["dev"].isnull()
    stats.loc[alone, "dev"] = stats.loc[alone, "avg"]
    stats.loc[alone, "avg"] = 0
    per_gene = stats.loc[table["mean_bin"]].set_index(table.index)
    table["dispersions_norm"] = (table["dispersions"] - per_gene["avg"]) / per_gene["dev"]
    norm = table["dispersions_norm"].to_numpy()
    ranked = np.sort(norm[~np.isnan(norm)])[::-1]
    if not ranked.size:
        raise InputDataError(f"no gene varies across the {moments.n_cells} training cells: no genes to select")
    cut_off = ranked[min(n_top_genes, ranked.size) - 1]
    table["highly_variable"] = np.nan_to_num(norm, nan=-np.inf) >= cut_off
    return table
