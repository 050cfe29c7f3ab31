"""A screen as one or more inputs: each input's obs pass and the cells kept of it.

Tahoe-100M is distributed as 14 plate files of raw counts with every cell line on every plate,
so one line's cells are spread over all of them. ``data.path`` names a file, a list of files or
a glob (:func:`deltatune.settings.data.screen_files`); the inputs are read one at a time, obs
first (checked and reduced to the cells kept), then expression in row chunks by whoever needs
it (:attr:`ScreenPart.chunks`). Genes are matched across inputs by name (:mod:`.genes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputDataError
from ..settings import Columns, PreprocessSettings
from .genes import use_var_column
from .obs import Census, cell_roles, check_columns
from .readers import CHUNK_ROWS, row_chunks

Chunks = Iterator[tuple[int, int, sp.csr_matrix]]


@dataclass
class ScreenPart:
    """One input after its obs pass: the rows kept (sorted positions), their obs and roles, the
    input's gene names, and a reader of any of its rows' expression in chunks."""

    source: str
    genes: pd.Index
    rows: np.ndarray
    obs: pd.DataFrame
    in_target: np.ndarray
    chunks: Callable[[np.ndarray], Chunks]


def _keep(
    source: str,
    obs: pd.DataFrame,
    var: pd.DataFrame,
    chunks: Callable[[np.ndarray], Chunks],
    columns: Columns,
    settings: PreprocessSettings,
    census: Census,
) -> ScreenPart:
    """Check ``obs`` and keep the target's and the base lines' cells (counted into ``census``)."""
    check_columns(obs, columns, source)
    in_target, in_base = cell_roles(obs, columns, settings)
    census.add(obs, in_target, in_base, columns)
    genes = use_var_column(ad.AnnData(var=var), settings.var_names, source).var_names
    rows = np.flatnonzero(in_target | in_base)
    return ScreenPart(source, genes, rows, obs.iloc[rows], in_target[rows], chunks)


def read_obs_var(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An .h5ad's obs and var, never its X."""
    if not Path(path).exists():
        raise InputDataError(f"input file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            return ad.io.read_elem(f["obs"]), ad.io.read_elem(f["var"])
    except (OSError, KeyError) as err:
        raise InputDataError(f"{path} is not a readable .h5ad file ({err})") from err


def _file_chunks(path: Path) -> Callable[[np.ndarray], Chunks]:
    def chunks(rows: np.ndarray) -> Chunks:
        with h5py.File(path, "r") as f:
            yield from row_chunks(f["X"], rows)

    return chunks


def _memory_chunks(adata: ad.AnnData) -> Callable[[np.ndarray], Chunks]:
    def chunks(rows: np.ndarray) -> Chunks:
        for lo in range(0, len(rows), CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, len(rows))
            yield lo, hi, sp.csr_matrix(adata.X[rows[lo:hi]], dtype=np.float32)

    return chunks


def open_files(
    paths: Sequence[str | Path], columns: Columns, settings: PreprocessSettings
) -> tuple[list[ScreenPart], Census]:
    """The obs pass over screen files, one at a time: each checked, the kept cells of each, and
    the whole screen checked (:meth:`Census.check`) before any expression is read."""
    census, parts = Census(), []
    for path in map(Path, paths):
        obs, var = read_obs_var(path)
        parts.append(_keep(str(path), obs, var, _file_chunks(path), columns, settings, census))
    census.check(columns, settings, parts[0].source if len(parts) == 1 else f"the {len(parts)} screen files")
    return parts, census


def open_memory(
    adata: ad.AnnData, columns: Columns, settings: PreprocessSettings, source: str = "input"
) -> tuple[list[ScreenPart], Census]:
    """:func:`open_files` for a screen held in memory."""
    census = Census()
    part = _keep(source, adata.obs, adata.var, _memory_chunks(adata), columns, settings, census)
    census.check(columns, settings, source)
    return [part], census
