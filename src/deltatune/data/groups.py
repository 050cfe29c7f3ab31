"""Which cells belong together (a plate, a cell type, a perturbation) and which are controls, vectorized.

Every step groups cells by obs columns: pairing by plate, training sets by perturbation and plate,
evaluation by perturbation and plate. The codes are computed once per call, without a loop over cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..settings import Columns


def group_codes(obs: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Integer code per cell for the combination of ``by`` columns, and the table of keys.

    Codes are dense (0..n_groups-1, groups in sorted key order) and computed without a Python
    loop or a hash of the combined keys: each column is factorized (free for categoricals) and
    the per-column codes are combined arithmetically. With no columns every cell is in group 0.
    """
    if not by:
        return np.zeros(len(obs), dtype=np.int64), pd.DataFrame(index=pd.RangeIndex(1))
    factorized = [pd.factorize(obs[c], sort=True) for c in by]
    for name, (codes, _) in zip(by, factorized, strict=True):
        if (codes < 0).any():
            raise InputDataError(f"column '{name}' has {int((codes < 0).sum())} missing value(s)")
    dims = tuple(max(len(uniques), 1) for _, uniques in factorized)
    flat = np.ravel_multi_index([codes.astype(np.int64) for codes, _ in factorized], dims)
    present = np.flatnonzero(np.bincount(flat, minlength=int(np.prod(dims))))
    dense = np.full(int(np.prod(dims)), -1, dtype=np.int64)
    dense[present] = np.arange(len(present))
    per_column = np.unravel_index(present, dims)
    values = zip(by, factorized, per_column, strict=True)
    keys = pd.DataFrame({c: np.asarray(uniques)[i].astype(str) for c, (_, uniques), i in values})
    return dense[flat], keys


def control_mask(obs: pd.DataFrame, columns: Columns) -> np.ndarray:
    """Which cells are controls (compares categorical codes, not strings, when it can)."""
    return (obs[columns.perturbation] == columns.control).to_numpy(dtype=bool)


def ranks_within(codes: np.ndarray, n_groups: int, keys: np.ndarray) -> np.ndarray:
    """Each entry's rank within its group in the order of ``keys`` (vectorized). With random keys
    the entries of rank below ``k`` are a seeded sample of at most ``k`` of each group, and the
    same ``k`` of a group's entries in any subset holding them (samples of parts combine)."""
    order = np.lexsort((keys, codes))
    rank = np.empty(len(codes), dtype=np.int64)
    starts = np.searchsorted(codes[order], np.arange(n_groups))
    rank[order] = np.arange(len(codes)) - starts[codes[order]]
    return rank
