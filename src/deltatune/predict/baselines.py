"""Simple baselines, predicted from the same control means as the model and scored the same way.

* ``baseline_mean_delta``: every test cell gets its plate's control mean plus the average effect
  of the target line's training perturbations (one effect for all drugs);
* ``baseline_other_lines``: every test cell gets its plate's control mean plus the same
  perturbation's average effect in the base model's training lines;
* ``baseline_plate_control``: every test cell gets its plate's control mean and nothing else, the
  zero-effect floor. Whatever it scores comes from plate structure, not from any drug effect.

An effect is plate-matched: a perturbed cell minus the control mean of its own plate, averaged over
the perturbation's cells. Both are floors a fine-tuned model has to clear to have learned anything
beyond "drugs do roughly this" or "this drug does the same in every line".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.groups import group_codes
from ..data.means import group_means
from ..data.splits import cells_of_split
from ..errors import InputDataError, SettingsError
from ..pairing.index import PairingIndex
from ..roles import FLOOR_BASELINE
from ..settings import Columns
from .inputs import control_mean_inputs
from .prediction import CHUNK_ROWS, Prediction


def plate_matched_effects(
    adata: ad.AnnData, index: PairingIndex, rows: np.ndarray, by: list[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Mean of (cell - its plate's control mean) over ``rows``, per group of the ``by`` columns.

    ``index`` is the plate (``batch``) pairing index of ``adata``. Returns the group keys and a
    (groups, genes) array; computed as two sparse products, without a dense residual matrix.
    """
    restricted = index.restrict(rows)
    codes, keys = group_codes(adata.obs.iloc[restricted.perturbed], by)
    all_codes = np.full(adata.n_obs, -1, dtype=np.int64)
    all_codes[restricted.perturbed] = codes
    cell_means = group_means(adata.X, all_codes, len(keys))
    counts = np.bincount(codes, minlength=len(keys))
    weights = sp.csr_matrix(
        (1.0 / counts[codes], (codes, restricted.mean_rows())), shape=(len(keys), len(index.count) + 1)
    )
    return keys, cell_means - weights @ index.mean_table()


@dataclass(frozen=True)
class BaselineInputs:
    """What a baseline may read: the target line (``index``: its plate pairing index, whose
    control means every prediction starts from), and, for ``baseline_other_lines``, the base lines
    with their plate x cell line index."""

    target: ad.AnnData
    split: pd.DataFrame
    columns: Columns
    index: PairingIndex
    base: ad.AnnData | None = None
    base_index: PairingIndex | None = None

    def cells(self, which: str) -> np.ndarray:
        """Rows of the target line's perturbed cells in split ``which``."""
        return np.flatnonzero(cells_of_split(self.target.obs, self.columns, self.split, which))


@dataclass(frozen=True)
class Effect:
    """The effect a baseline adds to each test cell's plate control mean: one for all cells (a
    row over genes, or 0), or a table of which row ``rows[i]`` is test cell i's."""

    values: np.ndarray | float
    rows: np.ndarray | None = None


def mean_delta(inputs: BaselineInputs) -> Effect:
    """``baseline_mean_delta``: the training perturbations' average effect for every test cell."""
    train = inputs.cells("train")
    _, effects = plate_matched_effects(inputs.target, inputs.index, train, [inputs.columns.perturbation])
    return Effect(effects.mean(axis=0))


def plate_control(inputs: BaselineInputs) -> Effect:
    """``baseline_plate_control``: the plate's control mean, no perturbation effect at all."""
    return Effect(0.0)


def other_lines(inputs: BaselineInputs) -> Effect:
    """``baseline_other_lines``: each test perturbation's average effect over the other lines."""
    base, base_index, columns = inputs.base, inputs.base_index, inputs.columns
    if base is None or base_index is None:
        raise SettingsError("baseline_other_lines needs the base lines and their pairing index")
    if list(base.var_names) != list(inputs.target.var_names):
        raise InputDataError("the base lines and the target line have different genes")
    by = [columns.perturbation, columns.cell_type]
    labels = inputs.target.obs[columns.perturbation].astype(str).to_numpy()[inputs.cells("test")]
    perturbed = base_index.perturbed
    tested = perturbed[base.obs[columns.perturbation].astype(str).isin(set(labels)).to_numpy()[perturbed]]
    keys, effects = plate_matched_effects(base, base_index, tested, by)
    per_line = pd.DataFrame(effects).groupby(keys[columns.perturbation].to_numpy()).mean()
    missing = sorted(set(labels) - set(per_line.index))
    if missing:
        raise InputDataError(
            f"baseline_other_lines: {len(missing)} test perturbation(s) occur in no other line (e.g. {missing[:3]})"
        )
    return Effect(per_line.to_numpy(), per_line.index.get_indexer(labels))


@dataclass(frozen=True)
class Baseline:
    """A baseline: the effect it adds, what it is in words (the report's note on baselines), and
    whether it reads the target line's training cells (every baseline reads its controls)."""

    effect: Callable[[BaselineInputs], Effect]
    description: str
    reads_training_cells: bool = False


# Every baseline by name: the config's ``baselines`` (whose schema lists the same names) picks them.
BASELINES = {
    "baseline_mean_delta": Baseline(
        mean_delta, "the average effect of the target line's training perturbations", reads_training_cells=True
    ),
    "baseline_other_lines": Baseline(other_lines, "the same perturbation's average effect in the other lines"),
    FLOOR_BASELINE: Baseline(plate_control, "no effect (the floor)"),
}


def predict_baseline(
    kind: str,
    target: ad.AnnData,
    split: pd.DataFrame,
    columns: Columns,
    index: PairingIndex,
    base: ad.AnnData | None = None,
    base_index: PairingIndex | None = None,
    out: str | Path | None = None,
) -> ad.AnnData | None:
    """The prediction of baseline ``kind`` (one of :data:`BASELINES`): each test cell's plate
    control mean plus the baseline's effect, clipped at 0, computed a chunk at a time. Returned,
    or written to ``out``.

    ``base`` and ``base_index`` (the base lines and their plate x cell line index) are read by
    ``baseline_other_lines`` only.
    """
    if kind not in BASELINES:
        raise SettingsError(f"baselines: unknown baseline '{kind}'; known: {sorted(BASELINES)}")
    inputs = BaselineInputs(target, split, columns, index, base, base_index)
    effect = BASELINES[kind].effect(inputs)
    test = inputs.cells("test")
    control = control_mean_inputs(index, test)
    with Prediction(target, test, columns, out) as prediction:
        for start in range(0, len(test), CHUNK_ROWS):
            part = slice(start, start + CHUNK_ROWS)
            values = effect.values if effect.rows is None else effect.values[effect.rows[part]]
            prediction.append(np.clip(control[part] + values, 0.0, None).astype(np.float32))
        return prediction.finish({"mode": kind, "fallback_cells": control.fallback_cells})
