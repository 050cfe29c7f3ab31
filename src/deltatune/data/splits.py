"""Train / val / test split of the target line's perturbations, shared by every stage.

The split is made once (by :mod:`deltatune.data.preprocess`) and written as a table, so that every
stage, baseline and the base model are scored on exactly the same test cells. It is drawn at
random by split unit, or fixed: listed in the config, or read from an arc-state split TOML
(parsed by cell-load's own :class:`cell_load.config.ExperimentConfig`, the reader ``state tx
train`` uses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from cell_load.config import ExperimentConfig

from ..errors import InputDataError
from ..settings import Columns, SplitSettings
from .groups import control_mask

SPLITS = ("train", "val", "test")


def read_split_toml(path: str | Path) -> ExperimentConfig:
    """An arc-state / cell-load split file: ``[training]`` datasets, ``[zeroshot]`` cell types
    held out whole, ``[fewshot]`` perturbations held out of a cell type (keys ``dataset.celltype``)."""
    try:
        return ExperimentConfig.from_toml(str(path))
    except FileNotFoundError:
        raise InputDataError(f"split file {path} does not exist") from None
    except Exception as err:  # toml's decode errors name the line
        raise InputDataError(f"split file {path} is not a readable TOML file: {err}") from None


def line_entries(config: ExperimentConfig, cell_line: str, section: str) -> dict:
    """The ``[zeroshot]`` or ``[fewshot]`` entries of ``cell_line``, by ``dataset.celltype`` key."""
    entries = getattr(config, section)
    return {key: value for key, value in entries.items() if key.split(".", 1)[-1] == cell_line}


def fewshot_lists(path: str | Path, cell_line: str) -> tuple[list[str], list[str]]:
    """(test, val) names of ``cell_line``'s ``[fewshot]`` entries in the split file ``path``; a
    name in both is a test name (cell-load lets them overlap; a perturbation is scored once)."""
    config = read_split_toml(path)
    entries = line_entries(config, cell_line, "fewshot")
    if not entries:
        whole = line_entries(config, cell_line, "zeroshot")
        why = (
            f"holds the whole line out ([zeroshot] {sorted(whole)}), which leaves nothing to fine-tune on"
            if whole
            else f"has no [fewshot] entry for it (entries: {sorted(config.fewshot) or 'none'})"
        )
        raise InputDataError(
            f"split file {path} {why}: target cell line '{cell_line}' needs a [fewshot.\"<dataset>.{cell_line}\"] "
            "entry with test (and val) lists, or use split.test or the fractions"
        )
    test = sorted({name for entry in entries.values() for name in entry.get("test", [])})
    val = sorted({name for entry in entries.values() for name in entry.get("val", [])} - set(test))
    if not test:
        raise InputDataError(
            f"split file {path}: the [fewshot] entry of '{cell_line}' ({sorted(entries)}) lists no test "
            "perturbations: nothing would be scored"
        )
    return test, val


def split_perturbations(
    obs: pd.DataFrame, columns: Columns, settings: SplitSettings, cell_line: str | None = None
) -> pd.DataFrame:
    """Assign every perturbation in ``obs`` to train, val or test by split unit.

    Returns one row per perturbation label: ``perturbation``, ``unit``, ``split``, ``n_cells``
    and ``holdout`` (``unit`` for a held-out drug, ``dose`` for a held-out dose of a training
    drug, ``listed`` for a name of a fixed split, empty for training perturbations).
    ``cell_line`` (the target line) finds its entry in ``settings.toml``.
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
    if settings.fixed:
        if settings.toml is not None:
            test, val = fewshot_lists(settings.toml, str(cell_line))
        else:
            test, val = list(settings.test), list(settings.val or ())
        return _listed(table, test, val, unit_col)
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


def _listed(table: pd.DataFrame, test: list[str], val: list[str], unit_col: str) -> pd.DataFrame:
    """A fixed split: each name is a split unit (every dose of a drug) or a perturbation label."""
    known = set(table["unit"]) | set(table["perturbation"])
    absent = [name for name in [*test, *val] if name not in known]
    if absent:
        raise InputDataError(
            f"the fixed split names {len(absent)} perturbation(s) not in the target line, neither a "
            f"'{unit_col}' value nor a label: {absent[:5]}"
        )

    def named(names: list[str]) -> pd.Series:
        return table["unit"].isin(names) | table["perturbation"].isin(names)

    table["split"] = np.where(named(test), "test", np.where(named(val), "val", "train"))
    if (table["split"] == "train").sum() == 0:
        raise InputDataError(
            "the fixed split holds out every perturbation of the target line: none is left to train on"
        )
    table["holdout"] = np.where(table["split"] == "train", "", "listed")
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
