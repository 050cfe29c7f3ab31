"""Reading the cells a step needs from an .h5ad without loading the whole file.

A Tahoe-100M cell line holds millions of cells; a file of several lines does not fit in memory
twice. obs is read first (validation needs nothing else), then X is streamed from the backed
file in row chunks and only the selected rows are kept, so peak memory stays near the size of
the selected cells.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputDataError

CHUNK_ROWS = 100_000
CHUNK_VALUES = 20_000_000  # stored values read at a time from a CSR or dense X (160 MB with CSR's indices)


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


def read_uns_keys(path: str | Path) -> set[str]:
    """The top-level keys of a file's ``uns``, read without loading anything else."""
    if not Path(path).exists():
        raise InputDataError(f"input file {path} does not exist")
    try:
        with h5py.File(path, "r") as handle:
            return set(handle["uns"].keys()) if "uns" in handle else set()
    except OSError as err:
        raise InputDataError(f"{path} is not a readable .h5ad file ({err})") from err


def read_rows(backed: ad.AnnData, rows: np.ndarray, chunk_rows: int | None = None) -> ad.AnnData:
    """An in-memory AnnData of ``rows`` (sorted positions) of a backed file, X as CSR float32.

    The CSR arrays are allocated once at their final size and filled chunk by chunk
    (:func:`row_chunks`), so peak memory is the selected rows plus one chunk.
    """
    rows = _sorted_rows(rows)
    stored = backed.file["X"]
    lengths = _row_lengths(stored, rows) if _is_csr(stored) else None
    if lengths is None:
        blocks = [block for _, _, block in row_chunks(stored, rows, chunk_rows)]
        X = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, backed.n_vars), dtype=np.float32)
    else:
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        data = np.empty(indptr[-1], dtype=np.float32)
        indices = np.empty(indptr[-1], dtype=stored["indices"].dtype)
        for lo, hi, block in row_chunks(stored, rows, chunk_rows):
            data[indptr[lo] : indptr[hi]] = block.data
            indices[indptr[lo] : indptr[hi]] = block.indices
        X = sp.csr_matrix((data, indices, indptr), shape=(len(rows), backed.n_vars))
    return ad.AnnData(X=X, obs=backed.obs.iloc[rows].copy(), var=backed.var.copy())


def row_chunks(
    stored: h5py.Group | h5py.Dataset, rows: np.ndarray, chunk_rows: int | None = None
) -> Iterator[tuple[int, int, sp.csr_matrix]]:
    """``rows`` (sorted positions) of an .h5ad's X (``file["X"]``) in file order, a window of file
    rows at a time: ``(lo, hi, block)`` with ``block`` the CSR float32 expression of
    ``rows[lo:hi]``. Only the window's part of the file is read (of a CSR X, only the span of the
    selected rows' entries; ``indptr`` whole). ``chunk_rows`` defaults to :data:`CHUNK_ROWS`; a window
    holds at most about :data:`CHUNK_VALUES` stored values (of a dense X, every gene of its rows), and
    only its selected rows become CSR (from dense, scipy builds int64 coordinates of every value)."""
    rows, chunk_rows = _sorted_rows(rows), chunk_rows or CHUNK_ROWS
    if _is_csr(stored):
        yield from _csr_chunks(stored, rows, chunk_rows)
        return
    dense = isinstance(stored, h5py.Dataset)
    X = stored if dense else ad.io.sparse_dataset(stored)
    n_obs, n_vars = X.shape
    if dense:  # every gene of a row is stored: at most CHUNK_VALUES values at a time
        chunk_rows = max(1, min(chunk_rows, CHUNK_VALUES // max(n_vars, 1)))
    for start in range(0, n_obs, chunk_rows):
        stop = min(start + chunk_rows, n_obs)
        lo, hi = np.searchsorted(rows, [start, stop])
        if lo == hi:
            continue
        block = X[start:stop]
        picked = rows[lo:hi] - start
        block = block[picked] if sp.issparse(block) else np.asarray(block)[picked]
        yield int(lo), int(hi), sp.csr_matrix(block, dtype=np.float32)


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be sorted and unique")
    return rows


def _is_csr(stored) -> bool:
    return isinstance(stored, h5py.Group) and stored.attrs.get("encoding-type") == "csr_matrix"


def _row_lengths(group: h5py.Group, rows: np.ndarray) -> np.ndarray:
    indptr = group["indptr"][:].astype(np.int64)
    return indptr[rows + 1] - indptr[rows]


def _csr_chunks(group: h5py.Group, rows: np.ndarray, chunk_rows: int) -> Iterator[tuple[int, int, sp.csr_matrix]]:
    """The selected rows of a CSR matrix on disk, a window of at most ``chunk_rows`` file rows and
    about :data:`CHUNK_VALUES` stored values at a time (a dense screen's rows hold thousands);
    of each window only the span from its first to its last selected row is read."""
    indptr = group["indptr"][:].astype(np.int64)
    n_obs, n_vars = len(indptr) - 1, int(group.attrs["shape"][1])
    if n_obs == 0:
        return
    by_values = np.searchsorted(indptr, np.arange(0, indptr[-1], CHUNK_VALUES), side="right") - 1
    starts = np.union1d(np.arange(0, n_obs, chunk_rows), by_values)
    for start, stop in zip(starts, [*starts[1:], n_obs], strict=True):
        lo, hi = np.searchsorted(rows, [start, stop])
        if lo == hi:
            continue
        chosen = rows[lo:hi]
        first, last = indptr[chosen[0]], indptr[chosen[-1] + 1]
        lengths = indptr[chosen + 1] - indptr[chosen]
        out_indptr = np.concatenate([[0], np.cumsum(lengths)])
        # positions of the selected rows' entries inside the window, in order
        take = np.repeat(indptr[chosen] - first - out_indptr[:-1], lengths) + np.arange(out_indptr[-1])
        data = group["data"][first:last][take].astype(np.float32, copy=False)
        indices = group["indices"][first:last][take]
        yield int(lo), int(hi), sp.csr_matrix((data, indices, out_indptr), shape=(len(chosen), n_vars))


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
