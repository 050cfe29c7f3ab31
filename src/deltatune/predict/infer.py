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

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.groups import group_codes
from ..data.splits import cells_of_split
from ..errors import InputDataError
from ..model.cellsets import make_cell_sets
from ..model.perturbations import Vocabulary
from ..model.st import BaseModel
from ..pairing.index import PairingIndex
from ..settings import Columns, InferenceSettings
from .inputs import control_mean_inputs, matched_control_inputs
from .prediction import Prediction

SETS_PER_FORWARD = 64


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
    out: str | Path | None = None,
) -> ad.AnnData | None:
    """Predict the test-split cells of ``target`` from their plates' control cells.

    ``index`` is the plate (``batch``) pairing index of ``target``, which holds the control means.
    ``vocabulary`` encodes the labels; pass the one ``base.vocabulary`` gave before an adapter
    was attached when unseen perturbations widened the model (default: the base vocabulary,
    unseen labels an error). The predicted test cells (obs copied from ``target``, in the order
    of their cell sets) followed by the real controls: returned, or written to ``out``.
    """
    settings.check()
    obs = target.obs
    index.check_rows_of(target.obs_names, "the target line")
    test = np.flatnonzero(cells_of_split(obs, columns, split, "test"))
    if len(test) == 0:
        raise InputDataError("the split file assigns no perturbation of the target line to 'test'")
    rng = np.random.default_rng(settings.seed)
    if settings.mode == "control_mean":
        inputs = control_mean_inputs(index, test)
    else:
        inputs = matched_control_inputs(index, test, target.X, rng)
    labels = obs[columns.perturbation].astype(str).to_numpy()[test]
    if vocabulary is None:
        vocabulary = base.vocabulary(labels, columns.control)
    codes, table = vocabulary.encode(labels)
    set_by = [c for c in (columns.perturbation, columns.cell_type, columns.batch) if c]
    groups = group_codes(obs.iloc[test], set_by)[0]
    sets, filled = make_cell_sets(groups, base.cell_set_len, rng)

    device = next(model.parameters()).device
    model.eval()
    codes = torch.from_numpy(codes)
    with Prediction(target, test[sets[filled]], columns, out) as prediction:  # rows in the order of the sets
        for start in tqdm(range(0, len(sets), SETS_PER_FORWARD), desc="infer", file=sys.stderr, mininterval=30.0):
            rows = sets[start : start + SETS_PER_FORWARD]
            keep = filled[start : start + SETS_PER_FORWARD]
            flat = rows.ravel()
            batch = {
                "pert_emb": table[codes[torch.from_numpy(flat)]].to(device),
                "ctrl_cell_emb": torch.from_numpy(inputs[flat]).to(device),
            }
            predicted = model(batch, padded=True).float().cpu().numpy().reshape(*rows.shape, -1)
            prediction.append(predicted[keep])
        added = set(vocabulary.added)
        unseen = sorted(label for label in np.unique(labels) if added & set(vocabulary.parts(label)))
        info = {
            "mode": settings.mode,
            "seed": settings.seed,
            "fallback_cells": inputs.fallback_cells,
            "unseen_by_base": unseen,
            "device": str(device),  # run-only, like the threads: recorded for the provenance
            "threads": torch.get_num_threads(),
        }
        return prediction.finish(info)
