"""Log-normalization of expression, a block of cells at a time.

Library-size normalization and log1p act on each cell (row) alone, so a matrix normalized block
by block is the matrix normalized whole: preprocessing streams a screen through
:func:`normalize_block` in row chunks and never holds the raw counts of more than one chunk.
The numbers are scanpy's (``normalize_total`` then ``log1p``), called on each block.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

from ..errors import InputDataError

TARGET_SUM = 1e4
MAX_LOG1P_VALUE = 30.0
COUNTS, LOG1P = "counts", "log1p"
NORMALIZATION = {COUNTS: f"normalize_total({TARGET_SUM:g}) + log1p", LOG1P: "none (already log1p)"}


def _matrix_values(X) -> np.ndarray:
    """The stored values of a dense or sparse matrix, as a flat array (no copy when possible)."""
    return X.data if sp.issparse(X) else np.asarray(X).ravel()


def detect_scale(X) -> str | None:
    """Say whether ``X`` holds raw ``"counts"`` or ``"log1p"`` data; reject anything else.

    Counts are non-negative integers; log1p data is non-negative and small. Large non-integer
    values (CPM, TPM without log) are rejected because every metric downstream assumes log1p.
    A block without a stored value says nothing: None.
    """
    values = _matrix_values(X)
    if not values.size:
        return None
    if not np.isfinite(values).all():
        raise InputDataError(f"X holds {int((~np.isfinite(values)).sum())} NaN or infinite value(s)")
    if values.min() < 0:
        raise InputDataError(f"X holds negative values (min {values.min():.3g}): expected counts or log1p")
    if np.array_equal(values, np.round(values)):
        return COUNTS
    if values.max() > MAX_LOG1P_VALUE:
        raise InputDataError(
            f"X holds non-integer values up to {values.max():.3g}: neither raw counts nor "
            "log1p-normalized data; give raw counts or log1p(normalized) values"
        )
    return LOG1P


class ScaleTracker:
    """The scale of a screen read in blocks: every block must agree with the first that says."""

    def __init__(self) -> None:
        self.scale: str | None = None

    def check(self, X, source: str) -> str | None:
        """The scale of the screen so far, after checking block ``X`` of ``source`` against it."""
        try:
            scale = detect_scale(X)
        except InputDataError as err:
            raise InputDataError(f"{source}: {err}") from None
        if scale is not None and self.scale is not None and scale != self.scale:
            raise InputDataError(
                f"{source} holds {scale} where the screen read before it holds {self.scale}: give every "
                "file on one scale (raw counts, or log1p of normalized values)"
            )
        self.scale = self.scale or scale
        return self.scale


def normalize_block(X: sp.csr_matrix, scale: str | None) -> sp.csr_matrix:
    """Rows of ``X`` as log1p(normalized) float32 CSR: scanpy's ``normalize_total`` to
    :data:`TARGET_SUM` and ``log1p`` for counts, unchanged for log1p data."""
    X = sp.csr_matrix(X, dtype=np.float32)
    if scale != COUNTS:
        return X
    block = ad.AnnData(X=X)
    sc.pp.normalize_total(block, target_sum=TARGET_SUM)
    sc.pp.log1p(block)
    return sp.csr_matrix(block.X, dtype=np.float32)
