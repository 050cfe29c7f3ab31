"""Control-mean inference: predict perturbed expression from control cells only.

The seed evaluated a model fed with the perturbed cells themselves, which measures nothing a user
needs. Here each test cell is represented by the mean control profile of its own plate (the global
control mean where its plate has no controls) plus its perturbation's one-hot code; the perturbed
cells' expression is never read. The result is a cell-eval-ready AnnData: predicted test cells
followed by the real control cells, copied unchanged so that the predicted and real control means
are identical and deltas are measured against the same baseline.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .batches import dense_rows
from .cellsets import make_cell_sets
from .columns import Columns
from .errors import InputDataError
from .model import BaseModel
from .pairing import PairingIndex, group_codes
from .splits import cells_of_split

SETS_PER_FORWARD = 64


def control_mean_inputs(index: PairingIndex, cells: np.ndarray) -> tuple[np.ndarray, int]:
    """Control-mean input of each of ``cells`` (its group's mean), and how many fell back.

    ``index`` groups cells by plate (strategy ``batch``), or is a single group (``random``) when
    the data has no plate column; only control expression went into its means.
    """
    restricted = index.restrict(cells)
    if not np.array_equal(restricted.perturbed, np.sort(cells)):
        raise InputDataError("some cells to predict are not perturbed cells of the pairing index")
    order = np.searchsorted(restricted.perturbed, cells)
    rows = restricted.mean_rows()[order]
    return index.mean_table()[rows], int(restricted.fallback_cells.sum())


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    base: BaseModel,
    target: ad.AnnData,
    split: pd.DataFrame,
    columns: Columns,
    index: PairingIndex,
    seed: int = 0,
) -> ad.AnnData:
    """Predict the test-split cells of ``target`` from their plates' control means.

    ``index`` is the plate (``batch``) pairing index of ``target``, which holds the control means.
    Returns predicted test cells (obs copied from ``target``) followed by the real controls.
    """
    obs = target.obs
    index.check_rows_of(target.obs_names, "the target line")
    test = np.flatnonzero(cells_of_split(obs, columns, split, "test"))
    if len(test) == 0:
        raise InputDataError("the split file assigns no perturbation of the target line to 'test'")
    inputs, n_fallback = control_mean_inputs(index, test)
    codes = base.perturbation_codes(obs[columns.perturbation].astype(str).to_numpy()[test])
    set_by = [c for c in (columns.perturbation, columns.cell_type, columns.batch) if c]
    groups = group_codes(obs.iloc[test], set_by)[0]
    sets, filled = make_cell_sets(groups, base.cell_set_len, np.random.default_rng(seed))

    device = next(model.parameters()).device
    model.eval()
    X_in = torch.from_numpy(np.ascontiguousarray(inputs))
    onehot = torch.nn.functional.one_hot(torch.from_numpy(codes), len(base.perturbations)).float()
    predicted = np.empty((len(test), len(base.genes)), dtype=np.float32)
    for start in range(0, len(sets), SETS_PER_FORWARD):
        rows = sets[start : start + SETS_PER_FORWARD]
        keep = filled[start : start + SETS_PER_FORWARD]
        flat = torch.from_numpy(rows.ravel())
        batch = {"pert_emb": onehot[flat].to(device), "ctrl_cell_emb": X_in[flat].to(device)}
        out = model(batch, padded=True).float().cpu().numpy().reshape(*rows.shape, -1)
        predicted[rows[keep]] = out[keep]

    return prediction_anndata(target, test, predicted, columns, {"mode": "control_mean", "fallback_cells": n_fallback})


def prediction_anndata(
    target: ad.AnnData, rows: np.ndarray, predicted: np.ndarray, columns: Columns, info: dict
) -> ad.AnnData:
    """The cell-eval-ready prediction: ``predicted`` for ``rows`` of ``target``, then its real controls.

    The controls are copied unchanged so that predicted and real control means are identical.
    """
    obs = target.obs
    is_control = (obs[columns.perturbation].astype(str) == columns.control).to_numpy()
    pred = ad.AnnData(X=predicted, obs=obs.iloc[rows].copy(), var=target.var.copy())
    controls = ad.AnnData(X=dense_rows(target.X[is_control]), obs=obs[is_control].copy(), var=target.var.copy())
    result = ad.concat([pred, controls], merge="same")
    result.uns["deltatune_inference"] = {
        **info,
        "n_predicted": int(len(rows)),
        "n_controls": int(is_control.sum()),
    }
    return result
