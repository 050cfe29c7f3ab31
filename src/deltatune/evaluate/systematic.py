"""Scores for what every perturbation shares: systematic variation and mode collapse.

A ``pearson_delta`` against controls also rewards the part of an effect that every perturbation
shares (a common stress response, the plates' offsets), and a prediction that gives every
perturbation nearly the same effect can still score well on it. Two checks the field uses:

**Perturbed-mean-centred delta** (Viñas Torné et al., "Systema: a framework for evaluating genetic
perturbation response prediction beyond systematic variation", Nature Biotechnology 2025; the
openproblems perturbation task's ``pearson_delta_perturbed_mean``). For a test perturbation ``p``
with predicted and real mean profiles ``y_p`` and ``r_p`` over genes, and ``P`` the test
perturbations scored together::

    pearson_delta_perturbed_mean(p) = pearson_genes(y_p - mean_{q in P} y_q,  r_p - mean_{q in P} r_q)

(an unweighted mean over perturbations, each side centred on its own). What every perturbation
shares cancels, so a prediction of only the shared part scores about 0. cell-eval 0.8 has no
such metric; its ``pearson_delta`` is ``pearson_genes(y_p - y_ctrl, r_p - r_ctrl)`` on its own
pseudobulks, so :func:`centred_on_perturbed_mean` swaps each side's control row for the mean
perturbation row and cell-eval's own ``pearson_delta`` computes exactly the formula above. A
prediction that is the same for every perturbation (a baseline that adds one effect to each
plate's controls, on one plate) has no deviation to correlate; its float32 means still differ by
rounding, which a correlation would turn into a random number. Deviations within
:data:`ROUNDING` of the profiles' size count as none, and such a prediction scores 0: it explains
none of the differences between perturbations.

**Mode collapse** (ArcInstitute/state issue 153 reports unrelated drugs predicted at a mutual
correlation of about 0.9). :func:`delta_correlations` gives, per perturbation, the mean Pearson
correlation of its delta (mean minus control mean) with every other test perturbation's, on the
predicted and on the real side. Their means over perturbations are the mean pairwise
correlations; the report's ``mode_collapse_ratio`` is predicted over real: near 1 the predicted
effects are as distinct as the real ones, far above 1 they collapse onto one effect.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from ..settings import Columns
from . import DELTA_CORRELATION_PREDICTED, DELTA_CORRELATION_REAL
from .pairs import Bulk

REFERENCE = "perturbed_mean"  # the name of the row that stands in for the controls
# Relative size of float32 rounding in a mean over many cells (eps 1.2e-7, times the growth of a
# long sum); real deviations between perturbations are orders of magnitude larger.
ROUNDING = 1e-5


def _rounding_only(deviations: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Rows of ``deviations`` no larger than float32 rounding of ``profiles``."""
    return np.abs(deviations).max(axis=1) <= ROUNDING * max(float(np.abs(profiles).max()), np.finfo(np.float32).tiny)


def _centred(side: ad.AnnData, treated: np.ndarray, columns: Columns) -> tuple[ad.AnnData, np.ndarray]:
    """The perturbation rows of ``side`` and their unweighted mean, labelled as the control; and
    which rows equal that mean up to rounding (set to it exactly)."""
    X = np.asarray(side.X[treated], dtype=np.float64)
    reference = X.mean(axis=0, keepdims=True)
    flat = _rounding_only(X - reference, X)
    X[flat] = reference
    labels = side.obs[columns.perturbation].astype(str).to_numpy()[treated]
    obs = pd.DataFrame({columns.perturbation: [*labels, columns.control]}, index=[*side.obs_names[treated], REFERENCE])
    centred = ad.AnnData(X=np.vstack([X, reference]).astype(np.float32), obs=obs, var=side.var.copy())
    return centred, labels[flat]


def centred_on_perturbed_mean(bulk: Bulk, columns: Columns) -> tuple[ad.AnnData, ad.AnnData, np.ndarray]:
    """Real and predicted bulks whose control row is each side's mean perturbation row, and the
    perturbations whose prediction is that mean (they score 0).

    ``bulk`` has one row per perturbation (of one plate, or pooled); its control rows are dropped.
    """
    treated = (bulk.real.obs[columns.perturbation].astype(str) != columns.control).to_numpy()
    real, _ = _centred(bulk.real, treated, columns)
    pred, flat = _centred(bulk.pred, treated, columns)
    return real, pred, flat


def _mean_correlation_with_others(deltas: np.ndarray) -> np.ndarray:
    """Per row, the mean Pearson correlation with every other row (NaN for a constant row)."""
    if len(deltas) < 2:
        return np.full(len(deltas), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.corrcoef(deltas.astype(np.float64))
    np.fill_diagonal(r, 0.0)
    others = np.isfinite(r).sum(axis=1) - 1  # the diagonal's 0 is not a partner
    return np.where(others > 0, np.nansum(r, axis=1) / np.maximum(others, 1), np.nan)


def delta_correlations(bulk: Bulk, columns: Columns) -> pd.DataFrame:
    """Per test perturbation, the mean correlation of its delta with the others', predicted and real.

    ``bulk`` is the pooled one: one row per perturbation and one control row. A delta that is
    constant over genes up to rounding (no effect) has no direction, and no correlation (NaN).
    """
    labels = bulk.real.obs[columns.perturbation].astype(str).to_numpy()
    control = labels == columns.control
    table = {"perturbation": labels[~control]}
    for name, side in ((DELTA_CORRELATION_PREDICTED, bulk.pred), (DELTA_CORRELATION_REAL, bulk.real)):
        X = np.asarray(side.X, dtype=np.float64)
        deltas = X[~control] - X[control].mean(axis=0)
        deltas[_rounding_only(deltas - deltas.mean(axis=1, keepdims=True), X)] = 0.0
        table[name] = _mean_correlation_with_others(deltas)
    return pd.DataFrame(table)
