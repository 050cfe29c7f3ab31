"""Train / val / test split of the target line's perturbations, shared by every stage.

The split is made once (by :mod:`deltatune.preprocess`) and written as a table, so that every
stage, baseline and the base model are scored on exactly the same test cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .columns import Columns
from .errors import InputDataError, SettingsError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSettings:
    """Fractions of split units (drugs) held out for validation and test, and the seed."""

    val_fraction: float = 0.15
    test_fraction: float = 0.3
    seed: int = 0

    def check(self) -> None:
        if not 0 <= self.val_fraction < 1 or not 0 < self.test_fraction < 1:
            raise SettingsError("split: val_fraction must be in [0, 1) and test_fraction in (0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            raise SettingsError("split: val_fraction + test_fraction must leave units to train on")


def split_perturbations(
    obs: pd.DataFrame, columns: Columns, settings: SplitSettings
) -> pd.DataFrame:
    """Assign every perturbation in ``obs`` to train, val or test by split unit.

    Returns one row per perturbation label: ``perturbation``, ``unit``, ``split``, ``n_cells``.
    """
    unit_col = columns.split_unit()
    treated = obs[obs[columns.perturbation].astype(str) != columns.control]
    table = (
        treated.groupby([columns.perturbation, unit_col], observed=True)
        .size()
        .rename("n_cells")
        .reset_index()
        .rename(columns={columns.perturbation: "perturbation", unit_col: "unit"})
    )
    table["perturbation"] = table["perturbation"].astype(str)
    table["unit"] = table["unit"].astype(str)
    units = np.sort(table["unit"].unique())
    n_test = max(1, round(settings.test_fraction * len(units)))
    n_val = round(settings.val_fraction * len(units))
    if len(units) - n_test - n_val < 1:
        raise InputDataError(
            f"the target cell line has {len(units)} '{unit_col}' value(s): "
            f"too few to hold out {n_test} for test and {n_val} for validation"
        )
    order = np.random.default_rng(settings.seed).permutation(units)
    assigned = dict.fromkeys(order[:n_test], "test") | dict.fromkeys(
        order[n_test : n_test + n_val], "val"
    )
    table["split"] = table["unit"].map(assigned).fillna("train")
    return table.sort_values(["split", "perturbation"]).reset_index(drop=True)


def cells_of_split(obs: pd.DataFrame, columns: Columns, split: pd.DataFrame, which: str) -> np.ndarray:
    """Mask of the perturbed cells whose perturbation is in split ``which``."""
    labels = split.loc[split["split"] == which, "perturbation"]
    return obs[columns.perturbation].astype(str).isin(set(labels)).to_numpy()


def read_split(path: str) -> pd.DataFrame:
    """Read a split table written by the preprocess step, checking its columns."""
    table = pd.read_csv(path, sep="\t", dtype={"perturbation": str, "unit": str, "split": str})
    missing = {"perturbation", "split"} - set(table.columns)
    if missing:
        raise InputDataError(f"split file {path} lacks column(s) {sorted(missing)}")
    bad = set(table["split"]) - set(SPLITS)
    if bad:
        raise InputDataError(f"split file {path} has unknown split name(s) {sorted(bad)}")
    return table
