"""Mean control expression per group, in one sparse product.

Inference feeds the model the mean control profile of a perturbed cell's plate (design 2.5), and
training can do the same (design 2.1 B). The means of all groups are one product of a
row-normalized indicator matrix with the control rows: no loop over groups or cells.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def group_means(X, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean row of ``X`` per group code, as a dense (n_groups, n_genes) float32 array.

    ``X`` is dense or sparse with one row per entry of ``codes``; groups without rows get NaN.
    """
    counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
    weights = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)[codes]
    indicator = sp.csr_matrix(
        (weights, (codes, np.arange(len(codes)))), shape=(n_groups, len(codes))
    )
    means = indicator @ X
    means = means.toarray() if sp.issparse(means) else np.asarray(means)
    means[counts == 0] = np.nan
    return means.astype(np.float32)
