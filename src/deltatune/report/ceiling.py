"""Two ceilings from the same split halves: cell-eval's replicate ceiling, and the bound for a
noise-free prediction.

The ceiling job scores one half of every test perturbation's real cells against the other half
(cell-eval's ``compute_ceiling``: disjoint halves of ``floor(n / 2)`` cells, controls split too),
giving a half-depth score ``r_half`` per perturbation and split.

* **Replicate ceiling** (cell-eval's): the mean of ``r_half`` over perturbations and splits, mapped
  to full depth with the Spearman-Brown prophecy ``2r / (1 + r)``. For a correlation it estimates
  the reliability of the real delta: how well *another replicate* of the screen, as noisy as this
  one, would correlate with it. A prediction has no noise of its own to lose, so it can score
  higher.
* **Noise-free bound**: with real delta = true effect + noise independent over genes, the true
  effect correlates with the real delta at ``sqrt(reliability)`` (the index of reliability of
  classical test theory: ``corr(T, T + E)^2 = var T / (var T + var E)``), which is what a perfect
  prediction scores. Per perturbation ``p``: ``reliability_p = SB(mean over splits of
  r_half_{p,s})``, ``bound_p = sqrt(max(reliability_p, 0))``; the bound of a score (a mean over
  perturbations) is the mean of ``bound_p``. For correlation scores only. A row above it scores
  better than the true effect would: its prediction shares noise with the real data (the same
  control cells, a reference from the same plates) or the estimate is off (few cells, few splits).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import MATCHED_SUFFIX, SCORES

# The metrics whose split-half ceiling cell-eval corrects to full depth (its SB_METRICS, 0.8.2);
# tests/test_report.py holds this list and the formula against cell-eval's own correction.
SPEARMAN_BROWN_METRICS = frozenset(
    {
        "pearson_delta",
        "discrimination_score_l1",
        "discrimination_score_l2",
        "discrimination_score_cosine",
        "overlap_at_N",
        "overlap_at_50",
        "overlap_at_100",
        "overlap_at_200",
        "overlap_at_500",
        "precision_at_N",
        "precision_at_50",
        "precision_at_100",
        "precision_at_200",
        "precision_at_500",
        "de_spearman_sig",
        "de_spearman_lfc_sig",
        "de_direction_match",
        "de_sig_genes_recall",
        "pr_auc",
        "roc_auc",
    }
)
# cell-eval's list, and every score of the catalogue with a split-half ceiling (Systema's score is
# a Pearson correlation of deltas like pearson_delta: the same correction).
CORRECTED_METRICS = SPEARMAN_BROWN_METRICS | {s.name for s in SCORES if s.ceiling}


def spearman_brown(r: np.ndarray) -> np.ndarray:
    """``2r / (1 + r)``: the reliability of a test of twice the length (NaN where ``r <= 0``)."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, 2.0 * r / (1.0 + r), np.nan)


def full_depth(means: pd.Series) -> pd.Series:
    """Half-depth split-half means mapped to full depth, as cell-eval's ``compute_ceiling`` does.

    The Spearman-Brown prophecy for the metrics in :data:`CORRECTED_METRICS` (pooled or
    ``_matched``) where ``r > 0``; every other value (errors, counts, a non-positive
    reliability) has no defensible ceiling and becomes NaN, as in cell-eval.
    """
    corrected = np.array([m.removesuffix(MATCHED_SUFFIX) in CORRECTED_METRICS for m in means.index])
    values = spearman_brown(means.to_numpy(dtype=np.float64))
    return pd.Series(np.where(corrected, values, np.nan), index=means.index)


def noise_free_bounds(half_scores: pd.DataFrame) -> pd.Series:
    """Per perturbation, the bound for a noise-free prediction from (splits x perturbations)
    half-depth correlations: ``sqrt(max(SB(mean over splits), 0))``."""
    r = half_scores.mean(axis=0).to_numpy(dtype=np.float64)
    bounds = np.where(np.isnan(r), np.nan, np.sqrt(np.nan_to_num(spearman_brown(r), nan=0.0)))
    return pd.Series(bounds, index=half_scores.columns)
