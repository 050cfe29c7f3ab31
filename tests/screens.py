"""Screens built so that the answer is known: every perturbation's real effect is a shared part
plus its own part, on two plates with offsets of their own; 8 training and 12 test perturbations."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from deltatune.settings import Columns

COLUMNS = Columns(perturbation="pert", control="ctrl", cell_type="line", batch="plate", drug=None, dose=None)
N_GENES, N_TRAIN, N_TEST, PLATES = 400, 8, 12, 2
TEST = [f"p{p:02d}" for p in range(N_TRAIN, N_TRAIN + N_TEST)]


def shared_and_own(cells: int, controls: int, noise: float, seed: int = 0):
    """Controls and every perturbation on each plate (plates have their own offsets);
    effect = shared + own. Returns the cells, the split, and the parts of the effects."""
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(5.0, 6.0, N_GENES)  # every value stays in log1p range
    offsets = rng.normal(0.0, 0.3, (PLATES, N_GENES))
    shared = rng.normal(0.0, 1.0, N_GENES)
    own = rng.normal(0.0, 0.8, (N_TRAIN + N_TEST, N_GENES))
    labels, plates, means = [], [], []
    for plate in range(PLATES):
        for p in range(-1, N_TRAIN + N_TEST):  # -1: the plate's controls
            n = controls if p < 0 else cells
            labels += ["ctrl" if p < 0 else f"p{p:02d}"] * n
            plates += [f"plate{plate}"] * n
            means.append(np.tile(baseline + offsets[plate] + (0.0 if p < 0 else shared + own[p]), (n, 1)))
    truth = np.vstack(means)
    X = truth + rng.normal(0.0, noise, truth.shape)
    obs = pd.DataFrame({"pert": labels, "plate": plates, "line": "c"}, index=[f"cell{i}" for i in range(len(labels))])
    var = pd.DataFrame(index=[f"g{i}" for i in range(N_GENES)])
    real = ad.AnnData(X=np.clip(X, 0.0, 14.9).astype(np.float32), obs=obs, var=var)  # cell-eval: log1p < 15
    split = pd.DataFrame(
        {
            "perturbation": [f"p{p:02d}" for p in range(N_TRAIN + N_TEST)],
            "split": ["train"] * N_TRAIN + ["test"] * N_TEST,
        }
    )
    return real, split, shared, own, truth.astype(np.float32)
