"""Reading the cells a step needs from an .h5ad without loading the whole file.

A Tahoe-100M cell line holds millions of cells; a file of several lines does not fit in memory
twice. obs is read first (validation needs nothing else), then X is streamed from the backed
file in row chunks and only the selected rows are kept, so peak memory stays near the size of
the selected cells.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputDataError

CHUNK_ROWS = 100_000


def read_h5ad(path: str | Path) -> ad.AnnData:
    """A whole .h5ad file in memory; a missing file is an input error naming it."""
    if not Path(path).exists():
        raise InputDataError(f"input file {path} does not exist")
    return ad.read_h5ad(path)


def open_backed(path: str | Path) -> ad.AnnData:
    """The file opened read-only in backed mode (obs and var in memory, X on disk)."""
    if not Path(path).exists():
        raise InputDataError(f"input file {path} does not exist")
    try:
        return ad.read_h5ad(path, backed="r")
    except (OSError, KeyError) as err:
        raise InputDataError(f"{path} is not a readable .h5ad file ({err})") from err


def read_rows(backed: ad.AnnData, rows: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> ad.AnnData:
    """An in-memory AnnData of ``rows`` (sorted positions) of a backed file, X as CSR float32."""
    rows = np.asarray(rows, dtype=np.int64)
    if np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be sorted and unique")
    blocks = []
    for start in range(0, backed.n_obs, chunk_rows):
        stop = min(start + chunk_rows, backed.n_obs)
        lo, hi = np.searchsorted(rows, [start, stop])
        if lo == hi:
            continue
        block = backed.X[start:stop]
        block = block if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
        blocks.append(sp.csr_matrix(block[rows[lo:hi] - start], dtype=np.float32))
    X = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, backed.n_vars), dtype=np.float32)
    return ad.AnnData(X=X, obs=backed.obs.iloc[rows].copy(), var=backed.var.copy())


def read_cells(path: str | Path, select: Callable[[pd.DataFrame], np.ndarray]) -> ad.AnnData:
    """Every cell of a file with its obs, and expression only for the cells ``select(obs)`` marks.

    The other cells keep their place, with empty rows in X, so that row numbers (and the pairing
    indexes built on them) stay valid: a step that needs only the training cells and the
    controls never reads, nor holds, the test cells' expression.
    """
    backed = open_backed(path)
    try:
        keep = np.flatnonzero(select(backed.obs))
        part = read_rows(backed, keep)
        counts = np.zeros(backed.n_obs, dtype=np.int64)
        counts[keep] = np.diff(part.X.indptr)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        X = sp.csr_matrix((part.X.data, part.X.indices, indptr), shape=(backed.n_obs, backed.n_vars))
        return ad.AnnData(X=X, obs=backed.obs.copy(), var=backed.var.copy(), uns=dict(backed.uns))
    finally:
        backed.file.close()


def dense_rows(X) -> np.ndarray:
    """``X`` (dense or sparse) as a dense float32 array."""
    return (X.toarray() if sp.issparse(X) else np.asarray(X)).astype(np.float32, copy=False)
