"""Scores for what every perturbation shares (Systema's centred score, mode collapse), and the
rule for a prediction with nothing to correlate.

A ``pearson_delta`` against controls also rewards the part of an effect that every perturbation
shares (a common stress response, the plates' offsets), and a prediction that gives every
perturbation nearly the same effect can still score well on it.

**Systema's centred score** (``pearson_delta_perturbed_mean``). For a test perturbation ``p``
with predicted and real mean profiles ``y_p`` and ``r_p`` over genes, and ``ref`` the mean of the
training perturbations' real centroids (:mod:`.reference`)::

    pearson_delta_perturbed_mean(p) = pearson_genes(y_p - ref,  r_p - ref)

One reference, subtracted from both sides: Systema's ``pearson_delta_reference_metrics``
(``corr_all_allpert``), checked against ``mlbio-epfl/systema`` at b03cbd0b
(``evaluation/pearson_delta_reference_metrics.py``: ``pearsonr(X_true - reference, X_pred -
reference)``). What the training perturbations share cancels on the real side only as far as the
test perturbations share it too; a prediction whose shared part is wrong keeps that error in
``y_p - ref`` and scores lower. cell-eval 0.8 has no such metric; its ``pearson_delta`` is
``pearson_genes(y_p - y_ctrl, r_p - r_ctrl)`` on its pseudobulks, so
:func:`centred_on_reference` puts ``ref`` in the place of both sides' control row and
cell-eval's own ``pearson_delta`` computes exactly the formula above. The plate-matched version
uses each plate's own reference.

**No signal, no score.** A correlation needs variation in the predicted vector. Where it is
constant over genes up to rounding (``y_p - y_ctrl`` of the no-effect floor against its own
plate's controls: every cell is predicted as that plate's control mean), cell-eval would
correlate rounding noise with the real delta. deltatune scores such a correlation 0 (it explains nothing) and marks the
perturbation in the score's ``no_signal_`` column, which the report reads out. The means are
float64 sums (:mod:`deltatune.data.means`), so the rounding left is float32's (6e-8 of the
profile), far below :data:`ROUNDING`, whatever the number of cells.

**Mode collapse** (ArcInstitute/state issue 153 reports unrelated drugs predicted at a mutual
correlation of about 0.9). :func:`delta_correlations` gives, per perturbation, the mean Pearson
correlation of its delta (mean minus control mean) with every other test perturbation's, on the
predicted and on the real side, and ``mode_collapse``, their difference. It lies in [-2, 2]: 0
when the predicted effects are as distinct as the real ones; predictions collapsed onto one
effect score 1 minus the real mean correlation (near 1 when the real effects are unrelated). A
ratio of the two would divide by the real mean correlation, near 0 exactly when collapse matters
most. A delta without signal correlates with nothing: 0.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from ..metrics import DELTA_CORRELATION_PREDICTED, DELTA_CORRELATION_REAL, MODE_COLLAPSE, no_signal
from ..settings import Columns
from .pairs import Bulk

REFERENCE = "reference"  # the name of the row that stands in for the controls
# Relative size, against the profiles, below which a difference of float64 means of float32 values
# is rounding: float32 rounding is 6e-8; real differences between perturbations are far larger.
ROUNDING = 1e-5


def without_signal(vectors: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` that are constant over genes up to the rounding of the ``profiles``
    they are differences of: a Pearson correlation with them has no variance to work with."""
    centred = vectors - vectors.mean(axis=1, keepdims=True)
    scale = float(np.abs(profiles).max()) if profiles.size else 0.0
    return np.abs(centred).max(axis=1) <= ROUNDING * max(scale, np.finfo(np.float32).tiny)


def _treated(bulk: Bulk, columns: Columns) -> np.ndarray:
    return (bulk.real.obs[columns.perturbation].astype(str) != columns.control).to_numpy()


def labels_without_signal(bulk: Bulk, columns: Columns, against: np.ndarray | None = None) -> np.ndarray:
    """Perturbations of ``bulk`` whose predicted mean equals ``against`` (by default the predicted
    control row) up to rounding: a correlation of their difference has nothing to work with."""
    treated = _treated(bulk, columns)
    X = np.asarray(bulk.pred.X, dtype=np.float64)
    row = X[~treated].mean(axis=0) if against is None else against
    flat = without_signal(X[treated] - row, X[treated])
    return bulk.pred.obs[columns.perturbation].astype(str).to_numpy()[treated][flat]


def centred_on_reference(
    bulk: Bulk, reference: np.ndarray, columns: Columns
) -> tuple[ad.AnnData, ad.AnnData, np.ndarray]:
    """Real and predicted bulks of ``bulk``'s perturbations with ``reference`` as their control
    row, and the perturbations whose prediction equals the reference up to rounding.

    ``bulk`` has one row per perturbation (of one plate, or pooled); its control rows are dropped.
    """
    treated = _treated(bulk, columns)
    labels = bulk.real.obs[columns.perturbation].astype(str).to_numpy()[treated]
    obs = pd.DataFrame(
        {columns.perturbation: [*labels, columns.control]}, index=[*bulk.real.obs_names[treated], REFERENCE]
    )

    def side(adata: ad.AnnData) -> ad.AnnData:
        X = np.asarray(adata.X[treated], dtype=np.float64)
        return ad.AnnData(X=np.vstack([X, reference]), obs=obs.copy(), var=adata.var.copy())

    return side(bulk.real), side(bulk.pred), labels_without_signal(bulk, columns, against=reference)


def _mean_correlation_with_others(deltas: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Per row, the mean Pearson correlation with every other row; a ``flat`` row (no signal)
    correlates 0 with every row. NaN with fewer than two rows."""
    n = len(deltas)
    if n < 2:
        return np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.corrcoef(deltas)
    r[flat, :] = 0.0
    r[:, flat] = 0.0
    np.fill_diagonal(r, 0.0)
    return r.sum(axis=1) / (n - 1)


def delta_correlations(bulk: Bulk, columns: Columns) -> pd.DataFrame:
    """Per test perturbation, the mean correlation of its delta with the others', predicted and
    real, their difference (``mode_collapse``), and which predicted deltas had no signal.

    ``bulk`` is the pooled one: one row per perturbation and one control row.
    """
    treated = _treated(bulk, columns)
    table = {"perturbation": bulk.real.obs[columns.perturbation].astype(str).to_numpy()[treated]}
    for name, side in ((DELTA_CORRELATION_PREDICTED, bulk.pred), (DELTA_CORRELATION_REAL, bulk.real)):
        X = np.asarray(side.X, dtype=np.float64)
        deltas = X[treated] - X[~treated].mean(axis=0)
        flat = without_signal(deltas, X)
        table[name] = _mean_correlation_with_others(deltas, flat)
        if side is bulk.pred:
            table[no_signal(name)] = flat.astype(np.float64)
    frame = pd.DataFrame(table)
    return frame.assign(**{MODE_COLLAPSE: frame[DELTA_CORRELATION_PREDICTED] - frame[DELTA_CORRELATION_REAL]})
