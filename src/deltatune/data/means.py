"""Mean expression per group of rows, accumulated in float64.

Inference feeds the model the mean control profile of a perturbed cell's plate (design 2.5), and
training can do the same (design 2.1 B); evaluation compares the means of predicted and real
cells. The means of all groups are a product of a row-normalized indicator matrix with the
expression matrix: no loop over groups or cells.

The sums run in float64. A float32 sum over a well of 10,000 cells is off by about 1e-4 of its
size; two predictions that are the same profile for every cell would then differ between
perturbations by that much, and a correlation of those differences is a random number. In
float64 the same means agree to about 1e-12. The rows that count are copied to float64 a block
at a time (:data:`BLOCK_VALUES`), so the copy is never larger than a block.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

BLOCK_VALUES = 1 << 24  # matrix entries converted to float64 at a time (128 MB dense)


def group_means(X, codes: np.ndarray, n_groups: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Mean row of ``X`` per group code, as a dense (n_groups, n_genes) float64 array.

    ``X`` is dense or sparse with one row per entry of ``codes``; rows with a negative code are
    left out, and groups without rows get NaN. ``counts`` (each group's size in a larger matrix
    that ``X`` is a block of rows of) turns the result into the block's share of those means:
    summed over the blocks, the means of the whole.
    """
    codes = np.asarray(codes, dtype=np.int64)
    in_block = np.bincount(codes[codes >= 0], minlength=n_groups)
    counts = in_block if counts is None else np.asarray(counts)
    weights = np.zeros(len(codes), dtype=np.float64)
    used = codes >= 0
    weights[used] = 1.0 / counts[codes[used]]
    means = np.zeros((n_groups, X.shape[1]), dtype=np.float64)
    step = max(1, BLOCK_VALUES // max(1, X.shape[1]))
    for start in range(0, len(codes), step):
        rows = np.flatnonzero(used[start : start + step])
        if len(rows) == 0:
            continue
        block = X[start + rows]  # only the rows that count: others may not even have been read
        block = block.astype(np.float64) if sp.issparse(block) else np.asarray(block, dtype=np.float64)
        indicator = sp.csr_matrix(
            (weights[start + rows], (codes[start + rows], np.arange(len(rows)))), shape=(n_groups, len(rows))
        )
        product = indicator @ block
        means += product.toarray() if sp.issparse(product) else np.asarray(product)
    means[counts == 0] = np.nan
    return means
