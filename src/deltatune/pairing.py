"""Pairing perturbed cells with control cells, vectorized.

The seed drew one control per perturbed cell in a Python loop, from all controls at random. Here
every cell gets a group code (its plate, cell type, or both, by strategy), controls are sorted
once by group, and a draw for all perturbed cells is one vectorized lookup. A perturbed cell
whose group has no controls falls back to a control drawn from all controls; such cells are
counted so that the report can say how often pairing was not what the strategy promised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .columns import Columns
from .errors import SettingsError

STRATEGIES = ("random", "batch", "celltype", "batch_celltype")


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

    With no columns every cell is in group 0.
    """
    if not by:
        return np.zeros(len(obs), dtype=np.int64), pd.DataFrame(index=pd.RangeIndex(1))
    grouped = obs.groupby(by, observed=True, sort=True)
    codes = grouped.ngroup().to_numpy(dtype=np.int64)
    keys = grouped.size().reset_index()[by]
    return codes, keys


@dataclass(frozen=True)
class PairingIndex:
    """Controls sorted by group, and each perturbed cell's group.

    ``controls[start[g]:start[g] + count[g]]`` are the control cells (row indices into the data)
    of group ``g``; ``perturbed`` and ``perturbed_group`` list the perturbed cells and their group.
    """

    strategy: str
    keys: pd.DataFrame
    controls: np.ndarray
    start: np.ndarray
    count: np.ndarray
    perturbed: np.ndarray
    perturbed_group: np.ndarray

    @property
    def fallback_cells(self) -> np.ndarray:
        """Mask over ``perturbed``: cells whose group has no control (paired at random)."""
        return self.count[self.perturbed_group] == 0

    def summary(self) -> dict:
        """Counts for the report: groups, and cells and groups that fell back to random."""
        fallback = self.fallback_cells
        return {
            "strategy": self.strategy,
            "n_groups": int(len(self.count)),
            "n_controls": int(len(self.controls)),
            "n_perturbed": int(len(self.perturbed)),
            "fallback_cells": int(fallback.sum()),
            "fallback_groups": int(np.unique(self.perturbed_group[fallback]).size),
        }

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One control row index per perturbed cell (aligned with ``perturbed``)."""
        count = self.count[self.perturbed_group]
        u = rng.random(len(self.perturbed))
        within = self.start[self.perturbed_group] + np.floor(u * count).astype(np.int64)
        anywhere = np.floor(u * len(self.controls)).astype(np.int64)
        return self.controls[np.where(count > 0, within, anywhere)]


def build_pairing_index(obs: pd.DataFrame, columns: Columns, strategy: str) -> PairingIndex:
    """Index the controls of ``obs`` by the groups of ``strategy``."""
    codes, keys = group_codes(obs, strategy_columns(strategy, columns))
    is_control = (obs[columns.perturbation].astype(str) == columns.control).to_numpy()
    control_rows = np.flatnonzero(is_control)
    order = np.argsort(codes[control_rows], kind="stable")
    count = np.bincount(codes[control_rows], minlength=len(keys)).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    perturbed = np.flatnonzero(~is_control)
    return PairingIndex(
        strategy=strategy,
        keys=keys,
        controls=control_rows[order],
        start=start,
        count=count,
        perturbed=perturbed,
        perturbed_group=codes[perturbed],
    )
