"""The prediction file: predicted test cells followed by the real control cells, ready for cell-eval."""

from __future__ import annotations

import anndata as ad
import numpy as np

from ..data.readers import dense_rows
from ..pairing.groups import control_mask
from ..settings import Columns

PREDICTED_LAYER = "predicted"


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
