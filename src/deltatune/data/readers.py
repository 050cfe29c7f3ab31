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
import h5py
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
    stored = backed.file["X"]
    if isinstance(stored, h5py.Group) and stored.attrs.get("encoding-type") == "csr_matrix":
        X = _csr_rows(stored, rows, chunk_rows)
    else:
        X = _dense_or_csc_rows(backed, rows, chunk_rows)
    return ad.AnnData(X=X, obs=backed.obs.iloc[rows].copy(), var=backed.var.copy())


def _csr_rows(group: h5py.Group, rows: np.ndarray, chunk_rows: int) -> sp.csr_matrix:
    """``rows`` of a CSR matrix on disk, read into arrays allocated once at their final size.

    Only ``indptr`` is read whole; ``data`` and ``indices`` are read a window of ``chunk_rows``
    file rows at a time, and only the selected rows' entries are kept.
    """
    indptr = group["indptr"][:].astype(np.int64)
    lengths = indptr[rows + 1] - indptr[rows]
    out_indptr = np.concatenate([[0], np.cumsum(lengths)])
    data = np.empty(out_indptr[-1], dtype=np.float32)
    indices = np.empty(out_indptr[-1], dtype=group["indices"].dtype)
    n_obs = len(indptr) - 1
    for start in range(0, n_obs, chunk_rows):
        lo, hi = np.searchsorted(rows, [start, min(start + chunk_rows, n_obs)])
        if lo == hi:
            continue
        first, last = indptr[rows[lo]], indptr[rows[hi - 1] + 1]
        window_data, window_indices = group["data"][first:last], group["indices"][first:last]
        # positions of the selected rows' entries inside the window, in order
        take = np.repeat(indptr[rows[lo:hi]] - first - out_indptr[lo:hi], lengths[lo:hi]) + np.arange(
            out_indptr[lo], out_indptr[hi]
        )
        data[out_indptr[lo] : out_indptr[hi]] = window_data[take]
        indices[out_indptr[lo] : out_indptr[hi]] = window_indices[take]
    return sp.csr_matrix((data, indices, out_indptr), shape=(len(rows), group.attrs["shape"][1]))


def _dense_or_csc_rows(backed: ad.AnnData, rows: np.ndarray, chunk_rows: int) -> sp.csr_matrix:
    """``rows`` of any other X, a chunk of file rows at a time (each chunk read whole)."""
    blocks = []
    for start in range(0, backed.n_obs, chunk_rows):
        stop = min(start + chunk_rows, backed.n_obs)
        lo, hi = np.searchsorted(rows, [start, stop])
        if lo == hi:
            continue
        block = backed.X[start:stop]
        block = block if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
        blocks.append(sp.csr_matrix(block[rows[lo:hi] - start], dtype=np.float32))
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, backed.n_vars), dtype=np.float32)


class UnreadRowError(LookupError):
    """A step asked for a row it did not read: a bug in the step, never a row of zeros."""


class PartlyRead(sp.csr_matrix):
    """The rows of a file as CSR, of which only those marked in ``read`` hold their expression.

    Rows never read are stored empty so that row numbers stay the file's; indexing one is an
    :class:`UnreadRowError`, so a step that picks a wrong row fails instead of reading zeros.
    What indexing returns is checked and then free of the mark.
    """

    def __init__(self, *args, read: np.ndarray | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.read = read

    def __getitem__(self, key):
        if self.read is not None:
            rows = key[0] if isinstance(key, tuple) else key
            check_read(self, rows)
        return super().__getitem__(key)


def rows_read(X) -> np.ndarray:
    """Which rows of ``X`` hold their expression: a :class:`PartlyRead`'s mark, else every row."""
    read = getattr(X, "read", None)
    return np.ones(X.shape[0], dtype=bool) if read is None else read


def check_read(X, rows, what: str = "a step") -> None:
    """Raise :class:`UnreadRowError` if any of ``rows`` (an index of any form numpy takes) of a
    :class:`PartlyRead` ``X`` was not read; any other ``X`` holds every row."""
    read = getattr(X, "read", None)
    if read is None or np.all(read[rows]):
        return
    positions = np.arange(len(read))[rows].reshape(-1)
    unread = positions[~read[positions]]
    raise UnreadRowError(
        f"{what} asked for {len(unread)} row(s) that were not read from the file (e.g. row {int(unread[0])})"
    )


def read_cells(path: str | Path, select: Callable[[pd.DataFrame], np.ndarray]) -> ad.AnnData:
    """Every cell of a file with its obs, and expression only for the cells ``select(obs)`` marks.

    The other cells keep their place, with rows that cannot be read (:class:`PartlyRead`), so
    that row numbers (and the pairing indexes built on them) stay valid: a step that needs only
    the training cells and the controls never reads, nor holds, the test cells' expression.
    """
    backed = open_backed(path)
    try:
        keep = np.flatnonzero(select(backed.obs))
        part = read_rows(backed, keep)
        counts = np.zeros(backed.n_obs, dtype=np.int64)
        counts[keep] = np.diff(part.X.indptr)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        read = np.zeros(backed.n_obs, dtype=bool)
        read[keep] = True
        X = PartlyRead((part.X.data, part.X.indices, indptr), shape=(backed.n_obs, backed.n_vars), read=read)
        return ad.AnnData(X=X, obs=backed.obs.copy(), var=backed.var.copy(), uns=dict(backed.uns))
    finally:
        backed.file.close()


def dense_rows(X) -> np.ndarray:
    """``X`` (dense or sparse) as a dense float32 array."""
    return (X.toarray() if sp.issparse(X) else np.asarray(X)).astype(np.float32, copy=False)
