"""The prediction file: predicted test cells followed by the real control cells, ready for cell-eval.

The predicted expression is held once: :func:`new_prediction` allocates the file's X, the steps
that predict write their rows into it in chunks, and the file is written from it. ``X`` is what
cell-eval reads; ``obs["predicted"]`` tells the predicted cells from the real controls, which are
copied unchanged so that predicted and real control means agree.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from ..data.readers import dense_rows
from ..pairing.groups import control_mask
from ..settings import Columns

CHUNK_ROWS = 50_000  # rows copied or computed at a time
INFO = "deltatune_inference"  # uns key: how the prediction was made


def new_prediction(target: ad.AnnData, rows: np.ndarray, columns: Columns) -> ad.AnnData:
    """``rows`` of ``target`` to predict (X's first ``len(rows)`` rows, left to fill), then its
    real controls (copied)."""
    controls = np.flatnonzero(control_mask(target.obs, columns))
    n = len(rows)
    X = np.empty((n + len(controls), target.n_vars), dtype=np.float32)
    for start in range(0, len(controls), CHUNK_ROWS):
        part = controls[start : start + CHUNK_ROWS]
        X[n + start : n + start + len(part)] = dense_rows(target.X[part])
    obs = pd.concat([target.obs.iloc[rows], target.obs.iloc[controls]])
    obs["predicted"] = np.repeat([True, False], [n, len(controls)])
    return ad.AnnData(X=X, obs=obs, var=target.var.copy())


def record(prediction: ad.AnnData, info: dict) -> ad.AnnData:
    """``prediction`` with how it was made (``info``) and its counts in ``uns``."""
    n_predicted = int(prediction.obs["predicted"].sum())
    prediction.uns[INFO] = {**info, "n_predicted": n_predicted, "n_controls": prediction.n_obs - n_predicted}
    return prediction
