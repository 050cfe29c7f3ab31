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

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.splits import cells_of_split
from ..errors import InputDataError, SettingsError
from ..pairing.groups import group_codes
from ..pairing.index import PairingIndex
from ..pairing.means import group_means
from ..roles import BASELINE_KINDS
from ..settings import Columns
from .inputs import control_mean_inputs
from .prediction import CHUNK_ROWS, Prediction


def plate_matched_effects(adata: ad.AnnData, index: PairingIndex, rows: np.ndarray, by: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
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


def _predict(
    target: ad.AnnData, split: pd.DataFrame, columns: Columns, index: PairingIndex, effects: np.ndarray | float,
    name: str, effect_rows: np.ndarray | None = None, out: str | Path | None = None,
) -> ad.AnnData | None:
    """Test cells' plate control means plus an effect, clipped at 0, computed a chunk at a time.

    ``effects`` is one effect for all cells (a row, or 0), or a table whose row ``effect_rows[i]``
    is test cell i's. The prediction is returned, or written to ``out``.
    """
    test = np.flatnonzero(cells_of_split(target.obs, columns, split, "test"))
    inputs = control_mean_inputs(index, test)
    with Prediction(target, test, columns, out) as prediction:
        for start in range(0, len(test), CHUNK_ROWS):
            part = slice(start, start + CHUNK_ROWS)
            effect = effects if effect_rows is None else effects[effect_rows[part]]
            prediction.append(np.clip(inputs[part] + effect, 0.0, None).astype(np.float32))
        return prediction.finish({"mode": name, "fallback_cells": inputs.fallback_cells})


def mean_delta(target: ad.AnnData, split: pd.DataFrame, columns: Columns, index: PairingIndex,
               out: str | Path | None = None) -> ad.AnnData | None:
    """``baseline_mean_delta``: the training perturbations' average effect for every test cell."""
    train = np.flatnonzero(cells_of_split(target.obs, columns, split, "train"))
    _, effects = plate_matched_effects(target, index, train, [columns.perturbation])
    return _predict(target, split, columns, index, effects.mean(axis=0), "baseline_mean_delta", out=out)


def plate_control(target: ad.AnnData, split: pd.DataFrame, columns: Columns, index: PairingIndex,
                  out: str | Path | None = None) -> ad.AnnData | None:
    """``baseline_plate_control``: the plate's control mean, no perturbation effect at all."""
    return _predict(target, split, columns, index, 0.0, "baseline_plate_control", out=out)


def other_lines(
    target: ad.AnnData, split: pd.DataFrame, columns: Columns, index: PairingIndex,
    base: ad.AnnData, base_index: PairingIndex, out: str | Path | None = None,
) -> ad.AnnData | None:
    """``baseline_other_lines``: each test perturbation's average effect over the other lines."""
    if list(base.var_names) != list(target.var_names):
        raise InputDataError("the base lines and the target line have different genes")
    treated = base_index.perturbed
    keys, effects = plate_matched_effects(base, base_index, treated, [columns.perturbation, columns.cell_type])
    per_line = pd.DataFrame(effects).groupby(keys[columns.perturbation].to_numpy()).mean()
    labels = target.obs[columns.perturbation].astype(str).to_numpy()[cells_of_split(target.obs, columns, split, "test")]
    missing = sorted(set(labels) - set(per_line.index))
    if missing:
        raise InputDataError(
            f"baseline_other_lines: {len(missing)} test perturbation(s) occur in no other line (e.g. {missing[:3]})"
        )
    return _predict(target, split, columns, index, per_line.to_numpy(), "baseline_other_lines",
                    effect_rows=per_line.index.get_indexer(labels), out=out)


def predict_baseline(
    kind: str, target: ad.AnnData, split: pd.DataFrame, columns: Columns, index: PairingIndex,
    base: ad.AnnData | None = None, base_index: PairingIndex | None = None, out: str | Path | None = None,
) -> ad.AnnData | None:
    """The prediction of baseline ``kind`` (one of :data:`deltatune.roles.BASELINE_KINDS`).

    ``base`` and ``base_index`` (the base lines and their plate x cell line index) are needed by
    ``baseline_other_lines`` only. The prediction is returned, or written to ``out``.
    """
    if kind == "baseline_mean_delta":
        return mean_delta(target, split, columns, index, out)
    if kind == "baseline_plate_control":
        return plate_control(target, split, columns, index, out)
    if kind == "baseline_other_lines":
        if base is None or base_index is None:
            raise SettingsError("baseline_other_lines needs the base lines and their pairing index")
        return other_lines(target, split, columns, index, base, base_index, out)
    raise SettingsError(f"baselines: unknown baseline '{kind}'; known: {BASELINE_KINDS}")
