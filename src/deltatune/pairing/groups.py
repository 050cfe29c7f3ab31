"""Group codes: which cells belong together (a plate, a cell type, a perturbation), vectorized."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputDataError, SettingsError
from ..settings import Columns
from ..settings.pairing import STRATEGIES


def strategy_columns(strategy: str, columns: Columns) -> list[str]:
    """The obs columns whose combination defines a pairing group under ``strategy``."""
    if strategy not in STRATEGIES:
        raise SettingsError(f"unknown pairing strategy '{strategy}'; choose one of {STRATEGIES}")
    wanted = {
        "random": [],
        "batch": [columns.batch],
        "celltype": [columns.cell_type],
        "batch_celltype": [columns.batch, columns.cell_type],
    }[strategy]
    if None in wanted:
        raise SettingsError(f"pairing strategy '{strategy}' needs data.columns.batch, which is not set")
    return wanted


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
    keys = pd.DataFrame({c: np.asarray(u)[i].astype(str) for c, (_, u), i in zip(by, factorized, per_column, strict=True)})
    return dense[flat], keys


def control_mask(obs: pd.DataFrame, columns: Columns) -> np.ndarray:
    """Which cells are controls (compares categorical codes, not strings, when it can)."""
    return (obs[columns.perturbation] == columns.control).to_numpy(dtype=bool)
