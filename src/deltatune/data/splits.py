"""Train / val / test split of the target line's perturbations, shared by every stage.

The split is made once (by :mod:`deltatune.data.preprocess`) and written as a table, so that every
stage, baseline and the base model are scored on exactly the same test cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..settings import Columns, SplitSettings
from .groups import control_mask

SPLITS = ("train", "val", "test")


def split_perturbations(obs: pd.DataFrame, columns: Columns, settings: SplitSettings) -> pd.DataFrame:
    """Assign every perturbation in ``obs`` to train, val or test by split unit.

    Returns one row per perturbation label: ``perturbation``, ``unit``, ``split``, ``n_cells``
    and ``holdout`` (``unit`` for a held-out drug, ``dose`` for a held-out dose of a training
    drug, empty for training perturbations).
    """
    unit_col = columns.split_unit()
    treated = obs[obs[columns.perturbation].astype(str) != columns.control]
    keys = list(dict.fromkeys([columns.perturbation, unit_col]))  # one key when the unit is the label
    counts = treated.groupby(keys, observed=True).size().rename("n_cells").reset_index()
    table = pd.DataFrame(
        {
            "perturbation": counts[columns.perturbation].astype(str),
            "unit": counts[unit_col].astype(str),
            "n_cells": counts["n_cells"],
        }
    )
    units = np.sort(table["unit"].unique())
    n_test = max(1, round(settings.test_fraction * len(units)))
    n_val = round(settings.val_fraction * len(units))
    if len(units) - n_test - n_val < 1:
        raise InputDataError(
            f"the target cell line has {len(units)} '{unit_col}' value(s): "
            f"too few to hold out {n_test} for test and {n_val} for validation"
        )
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(units)
    assigned = dict.fromkeys(order[:n_test], "test") | dict.fromkeys(order[n_test : n_test + n_val], "val")
    table["split"] = table["unit"].map(assigned).fillna("train")
    table["holdout"] = np.where(table["split"] == "train", "", "unit")
    if settings.dose_holdout_fraction > 0:
        _hold_out_doses(table, settings.dose_holdout_fraction, rng)
    return table.sort_values(["split", "perturbation"]).reset_index(drop=True)


def _hold_out_doses(table: pd.DataFrame, fraction: float, rng: np.random.Generator) -> None:
    """Move one perturbation (dose) of ``fraction`` of the multi-dose training units to test."""
    train = table[table["split"] == "train"]
    sizes = train.groupby("unit").size()
    eligible = np.sort(sizes.index[sizes > 1].to_numpy())
    chosen = rng.choice(eligible, size=round(fraction * len(eligible)), replace=False)
    # One random row per chosen unit: shuffle, then keep each unit's first row.
    picks = train[train["unit"].isin(chosen)].sample(frac=1.0, random_state=rng.integers(2**31))
    rows = picks.drop_duplicates("unit").index
    table.loc[rows, "split"] = "test"
    table.loc[rows, "holdout"] = "dose"


def cells_of_split(obs: pd.DataFrame, columns: Columns, split: pd.DataFrame, which: str) -> np.ndarray:
    """Mask of the perturbed cells whose perturbation is in split ``which``."""
    labels = split.loc[split["split"] == which, "perturbation"]
    return obs[columns.perturbation].astype(str).isin(set(labels)).to_numpy()


def training_cells(obs: pd.DataFrame, columns: Columns, split: pd.DataFrame) -> np.ndarray:
    """The cells whose expression training reads: the train split's perturbed cells and every control."""
    return control_mask(obs, columns) | cells_of_split(obs, columns, split, "train")


def read_split(path: str) -> pd.DataFrame:
    """Read a split table written by the preprocess step, checking its columns."""
    table = pd.read_csv(
        path, sep="\t", dtype={"perturbation": str, "unit": str, "split": str, "holdout": str}, keep_default_na=False
    )
    missing = {"perturbation", "split"} - set(table.columns)
    if missing:
        raise InputDataError(f"split file {path} lacks column(s) {sorted(missing)}")
    bad = set(table["split"]) - set(SPLITS)
    if bad:
        raise InputDataError(f"split file {path} has unknown split name(s) {sorted(bad)}")
    return table
