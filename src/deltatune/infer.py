"""Inference from control cells only: predict perturbed expression for the test perturbations.

The seed evaluated a model fed with the perturbed cells themselves, which measures nothing a user
needs. Here every test cell is represented by control expression of its own plate, and its
perturbation's input vector; the perturbed cells' expression is never read. Two modes:

* ``control_mean``: each cell gets its plate's control mean (the global control mean where its
  plate has no controls), as in the seed;
* ``matched_controls``: each cell gets a control cell drawn from its own plate, so the predicted
  cells keep the spread of real cells instead of collapsing onto one profile per plate.

The result is a cell-eval-ready AnnData: predicted test cells followed by the real control cells,
copied unchanged so that predicted and real control means are identical and deltas are measured
against the same baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .batches import dense_rows
from .cellsets import make_cell_sets
from .columns import Columns
from .errors import InputDataError, SettingsError
from .model import BaseModel
from .pairing import PairingIndex, control_mask, group_codes
from .perturbations import Vocabulary
from .splits import cells_of_split

SETS_PER_FORWARD = 64
MODES = ("control_mean", "matched_controls")
PREDICTED_LAYER = "predicted"


@dataclass(frozen=True)
class InferenceSettings:
    """How test cells are represented: their plate's control mean, or sampled plate controls."""

    mode: str = "control_mean"
    seed: int = 0

    def check(self) -> None:
        if self.mode not in MODES:
            raise SettingsError(f"inference.mode '{self.mode}' is not one of {MODES}")


def _test_rows(index: PairingIndex, cells: np.ndarray) -> tuple[PairingIndex, np.ndarray]:
    """``index`` restricted to ``cells``, and the position of each cell in its ``perturbed``."""
    restricted = index.restrict(cells)
    if not np.array_equal(restricted.perturbed, np.sort(cells)):
        raise InputDataError("some cells to predict are not perturbed cells of the pairing index")
    return restricted, np.searchsorted(restricted.perturbed, cells)


def control_mean_inputs(index: PairingIndex, cells: np.ndarray) -> tuple[np.ndarray, int]:
    """Control-mean input of each of ``cells`` (its group's mean), and how many fell back.

    ``index`` groups cells by plate (strategy ``batch``), or is a single group (``random``) when
    the data has no plate column; only control expression went into its means.
    """
    restricted, order = _test_rows(index, cells)
    return index.mean_table()[restricted.mean_rows()[order]], int(restricted.fallback_cells.sum())


def matched_control_inputs(
    index: PairingIndex, cells: np.ndarray, X, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """One control cell of its own group for each of ``cells`` (rows of ``X``), and fallbacks.

    Only the drawn control rows of ``X`` are read.
    """
    restricted, order = _test_rows(index, cells)
    drawn = restricted.draw(rng)[order]
    return dense_rows(X[drawn]), int(restricted.fallback_cells.sum())


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    base: BaseModel,
    target: ad.AnnData,
    split: pd.DataFrame,
    columns: Columns,
    index: PairingIndex,
    settings: InferenceSettings = InferenceSettings(),
    vocabulary: Vocabulary | None = None,
) -> ad.AnnData:
    """Predict the test-split cells of ``target`` from their plates' control cells.

    ``index`` is the plate (``batch``) pairing index of ``target``, which holds the control means.
    ``vocabulary`` encodes the labels; pass the one ``base.vocabulary`` gave before an adapter
    was attached when unseen perturbations widened the model (default: the base vocabulary,
    unseen labels an error). Returns predicted test cells (obs copied from ``target``) followed by the real controls.
    """
    settings.check()
    obs = target.obs
    index.check_rows_of(target.obs_names, "the target line")
    test = np.flatnonzero(cells_of_split(obs, columns, split, "test"))
    if len(test) == 0:
        raise InputDataError("the split file assigns no perturbation of the target line to 'test'")
    rng = np.random.default_rng(settings.seed)
    if settings.mode == "control_mean":
        inputs, n_fallback = control_mean_inputs(index, test)
    else:
        inputs, n_fallback = matched_control_inputs(index, test, target.X, rng)
    labels = obs[columns.perturbation].astype(str).to_numpy()[test]
    if vocabulary is None:
        vocabulary = base.vocabulary(labels, columns.control)
    codes, table = vocabulary.encode(labels)
    set_by = [c for c in (columns.perturbation, columns.cell_type, columns.batch) if c]
    groups = group_codes(obs.iloc[test], set_by)[0]
    sets, filled = make_cell_sets(groups, base.cell_set_len, rng)

    device = next(model.parameters()).device
    model.eval()
    X_in = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    pert_emb = table[torch.from_numpy(codes)]
    predicted = np.empty((len(test), len(base.genes)), dtype=np.float32)
    for start in range(0, len(sets), SETS_PER_FORWARD):
        rows = sets[start : start + SETS_PER_FORWARD]
        keep = filled[start : start + SETS_PER_FORWARD]
        flat = torch.from_numpy(rows.ravel())
        batch = {"pert_emb": pert_emb[flat].to(device), "ctrl_cell_emb": X_in[flat].to(device)}
        out = model(batch, padded=True).float().cpu().numpy().reshape(*rows.shape, -1)
        predicted[rows[keep]] = out[keep]

    added = set(vocabulary.added)
    unseen = sorted(label for label in np.unique(labels) if added & set(vocabulary.parts(label)))
    info = {"mode": settings.mode, "seed": settings.seed, "fallback_cells": n_fallback, "unseen_by_base": unseen}
    return prediction_anndata(target, test, predicted, columns, info)


def prediction_anndata(
    target: ad.AnnData, rows: np.ndarray, predicted: np.ndarray, columns: Columns, info: dict
) -> ad.AnnData:
    """The cell-eval-ready prediction: ``predicted`` for ``rows`` of ``target``, then its real controls.

    ``X`` is what cell-eval reads. ``layers["predicted"]`` holds the same values under a name that
    survives putting these cells next to the real data (``real.layers["predicted"] =
    pred[real.obs_names].layers["predicted"]``); ``obs["predicted"]`` tells predicted cells from
    the real controls, which are copied unchanged so that predicted and real control means agree.
    """
    obs = target.obs
    is_control = control_mask(obs, columns)
    pred = ad.AnnData(X=predicted, obs=obs.iloc[rows].copy(), var=target.var.copy())
    controls = ad.AnnData(X=dense_rows(target.X[is_control]), obs=obs[is_control].copy(), var=target.var.copy())
    result = ad.concat([pred, controls], merge="same")
    result.obs["predicted"] = np.repeat([True, False], [len(rows), int(is_control.sum())])
    result.layers[PREDICTED_LAYER] = result.X
    result.uns["deltatune_inference"] = {
        **info,
        "n_predicted": len(rows),
        "n_controls": int(is_control.sum()),
    }
    return result
