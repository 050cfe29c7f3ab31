"""The real and predicted AnnData cell-eval compares: the target line's test cells and controls.

cell-eval compares per-perturbation means against the control mean of each AnnData; both must
hold the same perturbations, control cells included, over the same genes in the same order. The
prediction carries the same real controls (copied by inference), so predicted controls cannot
move the deltas (cell-eval issues 183 and 196).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from ..data.genes import measured_genes
from ..data.splits import cells_of_split
from ..errors import InputDataError
from ..pairing.groups import control_mask
from ..settings import Columns


def _for_cell_eval(adata: ad.AnnData, columns: Columns) -> ad.AnnData:
    """Dense float32 X and no unused categorical levels (cell-eval's DE step crashes on them)."""
    adata.obs[columns.perturbation] = pd.Categorical(adata.obs[columns.perturbation].astype(str))
    adata.X = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float32)
    return adata


def real_test_cells(target: ad.AnnData, split: pd.DataFrame, columns: Columns) -> ad.AnnData:
    """The target line's test cells and all its controls: the real side of every comparison.

    Genes a checkpoint knows but the data lacks (zero-filled by preprocessing) are left out:
    there is nothing real to score them against.
    """
    keep = control_mask(target.obs, columns) | cells_of_split(target.obs, columns, split, "test")
    return _for_cell_eval(measured_genes(target[keep]).copy(), columns)


def evaluation_pair(
    target: ad.AnnData, predicted: ad.AnnData, split: pd.DataFrame, columns: Columns
) -> tuple[ad.AnnData, ad.AnnData]:
    """The real and predicted AnnData for cell-eval, aligned cell by cell and gene by gene."""
    real = real_test_cells(target, split, columns)
    if not set(real.var_names) <= set(predicted.var_names):
        raise InputDataError("the prediction lacks genes of the data: it was made for other data")
    predicted = predicted[:, real.var_names]
    missing = real.obs_names.difference(predicted.obs_names)
    if len(missing):
        raise InputDataError(
            f"prediction lacks {len(missing)} test or control cell(s) of the data (e.g. {list(missing[:3])})"
        )
    return real, _for_cell_eval(predicted[real.obs_names].copy(), columns)
