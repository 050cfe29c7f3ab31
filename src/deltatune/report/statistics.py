"""Uncertainty for the comparison: bootstrap intervals and paired tests over test perturbations.

A stage's score is a mean over test perturbations and replicate seeds; both are samples, so the
interval resamples both (perturbations with replacement, and seeds with replacement, jointly per
bootstrap draw). Stages are compared on the same perturbations, so the tests are paired: a
Wilcoxon signed-rank test on the per-perturbation scores (averaged over seeds) of two stages.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..settings import BootstrapSettings

GATHER_LIMIT = 20_000_000  # values per block of bootstrap draws (160 MB as float64)


def score_matrix(comparison: pd.DataFrame, stage: str, metric: str) -> pd.DataFrame:
    """(replicates x perturbations) scores of one stage for one metric, from the tidy table."""
    rows = comparison[(comparison["stage"] == stage) & (comparison["metric"] == metric)]
    return rows.pivot(index="replicate", columns="perturbation", values="value")


def bootstrap_interval(values: np.ndarray, settings: BootstrapSettings) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (replicates x perturbations).

    Each draw resamples the perturbations and the replicates with replacement; the work is a
    (replicates, draws, perturbations) gather, taken in blocks of draws so that memory stays
    bounded for thousands of perturbations.
    """
    values = np.asarray(values, dtype=np.float64)
    n_rep, n_pert = values.shape
    rng = np.random.default_rng(settings.seed)
    perts = rng.integers(0, n_pert, size=(settings.samples, n_pert))
    reps = rng.integers(0, n_rep, size=(settings.samples, n_rep))
    block = max(1, GATHER_LIMIT // max(1, n_rep * n_pert))
    per_rep = np.concatenate(
        [np.nanmean(values[:, perts[i : i + block]], axis=2) for i in range(0, settings.samples, block)], axis=1
    )  # (replicates, draws)
    means = np.nanmean(np.take_along_axis(per_rep.T, reps, axis=1), axis=1)
    tail = (1.0 - settings.level) / 2.0
    low, high = np.nanquantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_test(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``a`` against ``b`` over shared perturbations.

    ``a`` and ``b`` are (replicates x perturbations) score matrices; each perturbation's score is
    its mean over replicates. Identical scores give p = 1.
    """
    shared = a.columns.intersection(b.columns)
    diff = (a[shared].mean(axis=0) - b[shared].mean(axis=0)).dropna().to_numpy()
    if len(diff) == 0:
        return float("nan")
    if np.allclose(diff, 0.0):
        return 1.0
    return float(stats.wilcoxon(diff, zero_method="wilcox").pvalue)
