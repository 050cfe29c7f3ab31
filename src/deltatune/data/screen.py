"""A screen as one or more inputs: each input's obs pass and the cells kept of it.

Tahoe-100M is distributed as 14 plate files of raw counts with every cell line on every plate,
so one line's cells are spread over all of them. ``data.path`` names a file, a list of files or
a glob (:func:`deltatune.settings.data.screen_files`); the inputs are read one at a time, obs
first (checked and reduced to the cells kept), then expression in row chunks by whoever needs
it (:attr:`ScreenPart.chunks`). Genes are matched across inputs by name (:mod:`.genes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputDataError
from ..settings import Columns, PreprocessSettings
from .genes import use_var_column
from .groups import group_codes, ranks_within
from .obs import Census, cell_roles, check_columns, kept_cells
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
    keys: np.ndarray | None = None  # the kept cells' sampling keys, with base_cells_per_group


def _keep(
    source: str,
    obs: pd.DataFrame,
    var: pd.DataFrame,
    chunks: Callable[[np.ndarray], Chunks],
    columns: Columns,
    settings: PreprocessSettings,
    census: Census,
    number: int,
) -> ScreenPart:
    """Check ``obs`` (of input ``number``) and keep the target's and the base lines' cells
    (counted into ``census``); of the base lines, with ``base_cells_per_group``, only the cells
    that may be in the screen's sample (:func:`sample_base`), so memory holds no more."""
    check_columns(obs, columns, source)
    kept = kept_cells(obs, settings.keep_cells, source)
    in_target, in_base = cell_roles(obs, columns, settings, kept)
    census.add(obs, (in_target, in_base), columns, kept)
    genes = use_var_column(ad.AnnData(var=var), settings.var_names, source).var_names
    keys = None
    if settings.base_cells_per_group is not None:
        keys = np.random.default_rng([settings.split.seed, number]).random(len(obs))
        base = np.flatnonzero(in_base)
        in_base = np.zeros_like(in_base)
        in_base[base[_first_of_groups(obs.iloc[base], keys[base], columns, settings.base_cells_per_group)]] = True
    rows = np.flatnonzero(in_target | in_base)
    return ScreenPart(
        source, genes, rows, obs.iloc[rows], in_target[rows], chunks, None if keys is None else keys[rows]
    )


def _first_of_groups(obs: pd.DataFrame, keys: np.ndarray, columns: Columns, cap: int) -> np.ndarray:
    """Mask of the ``cap`` cells of lowest key in each (line, perturbation, plate) group."""
    by = [c for c in (columns.cell_type, columns.perturbation, columns.batch) if c is not None]
    codes, groups = group_codes(obs, by)
    return ranks_within(codes, len(groups), keys) < cap


def sample_base(parts: list[ScreenPart], columns: Columns, settings: PreprocessSettings) -> list[ScreenPart]:
    """``parts`` keeping at most ``settings.base_cells_per_group`` base-line cells of each (line,
    perturbation, plate) group over all inputs: those of lowest key, random numbers drawn per
    input with the split's seed. Every input kept its own lowest (:func:`_keep`), which hold the
    screen's, so this is the screen's seeded sample. Every cell of the target line stays."""
    if settings.base_cells_per_group is None:
        return parts
    base = pd.concat([p.obs[~p.in_target] for p in parts])
    keys = np.concatenate([p.keys[~p.in_target] for p in parts])
    first = _first_of_groups(base, keys, columns, settings.base_cells_per_group)
    kept = iter(np.split(first, np.cumsum([(~p.in_target).sum() for p in parts])[:-1]))
    sampled = []
    for part in parts:
        keep = part.in_target.copy()
        keep[~part.in_target] = next(kept)
        sampled.append(
            replace(
                part, rows=part.rows[keep], obs=part.obs[keep], in_target=part.in_target[keep], keys=part.keys[keep]
            )
        )
    return sampled


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
        parts.append(_keep(str(path), obs, var, _file_chunks(path), columns, settings, census, len(parts)))
    census.check(columns, settings, parts[0].source if len(parts) == 1 else f"the {len(parts)} screen files")
    return parts, census


def open_memory(
    adata: ad.AnnData, columns: Columns, settings: PreprocessSettings, source: str = "input"
) -> tuple[list[ScreenPart], Census]:
    """:func:`open_files` for a screen held in memory."""
    census = Census()
    part = _keep(source, adata.obs, adata.var, _memory_chunks(adata), columns, settings, census, 0)
    census.check(columns, settings, source)
    return [part], census
