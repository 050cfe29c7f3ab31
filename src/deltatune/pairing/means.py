"""Mean expression per group of rows, in one sparse product.

Inference feeds the model the mean control profile of a perturbed cell's plate (design 2.5), and
training can do the same (design 2.1 B). The means of all groups are one product of a
row-normalized indicator matrix with the expression matrix: no loop over groups or cells, and no
copy of the selected rows.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def group_means(X, codes: np.ndarray, n_groups: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Mean row of ``X`` per group code, as a dense (n_groups, n_genes) float32 array.

    ``X`` is dense or sparse with one row per entry of ``codes``; rows with a negative code are
    left out, and groups without rows get NaN. ``counts`` (each group's size in a larger matrix
    that ``X`` is a block of rows of) turns the result into the block's share of those means:
    summed over the blocks, the means of the whole.
    """
    rows = np.flatnonzero(codes >= 0)
    in_block = np.bincount(codes[rows], minlength=n_groups)
    counts = in_block if counts is None else counts
    # Build the CSR arrays directly, with 32-bit indices where they fit and X's float type:
    # scipy multiplies with the widest index and value types of its operands, so a 64-bit
    # indicator would copy all of X to 64 bits first.
    value_dtype = np.result_type(X.dtype, np.float32)
    index_dtype = np.int32 if max(len(codes), len(rows)) < np.iinfo(np.int32).max else np.int64
    rows = rows[np.argsort(codes[rows], kind="stable")]
    indicator = sp.csr_matrix(
        (
            (1.0 / counts[codes[rows]]).astype(value_dtype),
            rows.astype(index_dtype),
            np.concatenate([[0], np.cumsum(in_block)]).astype(index_dtype),
        ),
        shape=(n_groups, len(codes)),
    )
    means = indicator @ X
    means = means.toarray() if sp.issparse(means) else np.asarray(means)
    means = means.astype(np.float32)
    means[counts == 0] = np.nan
    return means
