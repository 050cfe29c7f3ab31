"""The scores the report leads with, each named once with what it means and how it is treated.

cell-eval computes every score (:mod:`deltatune.evaluate.scores`); this catalogue says what the
report's tables and first table, ``compare`` and the search do with each: its label, whether it
is a Pearson correlation (then a prediction with nothing to correlate scores 0 with a note, and
the noise ceiling has a noise-free bound), whether it has a split-half ceiling (cell-eval's
Spearman-Brown correction maps it to full depth), whether rows are tested against each other on
it and whether a search may choose on it. Adding a score: an entry here, the code that computes
it in :mod:`deltatune.evaluate`, and its test. It imports nothing (the settings layer reads it).
"""

from __future__ import annotations

from dataclasses import dataclass

PRIMARY_METRIC = "pearson_delta"
MATCHED_SUFFIX = "_matched"  # a metric against each plate's own controls
MATCHED = PRIMARY_METRIC + MATCHED_SUFFIX
PERTURBED_MEAN = PRIMARY_METRIC + "_perturbed_mean"  # deltas against Systema's reference
PERTURBED_MEAN_MATCHED = PERTURBED_MEAN + MATCHED_SUFFIX
DISCRIMINATION = "discrimination_score_l1"
DELTA_CORRELATION_PREDICTED = "delta_correlation_predicted"  # mean correlation of a prediction's delta with the others'
DELTA_CORRELATION_REAL = "delta_correlation_real"
MODE_COLLAPSE = "mode_collapse"  # the first minus the second
NO_SIGNAL_PREFIX = "no_signal_"  # per-perturbation share of a correlation scored 0 for want of a predicted signal


@dataclass(frozen=True)
class Score:
    """A score of the report: ``label`` heads its column in the first table (HTML).

    ``correlation``: a Pearson correlation of a predicted with a real vector; ``ceiling``: the
    split-half ceiling applies (cell-eval's Spearman-Brown correction); ``tested``: paired tests
    against ``base`` and the parent stage; ``searchable``: ``search.metric`` may name it.
    """

    name: str
    label: str
    description: str
    correlation: bool = True
    ceiling: bool = True
    tested: bool = True
    searchable: bool = False


SCORES = (
    Score(
        PRIMARY_METRIC,
        "pearson_delta<br>pooled",
        "cell-eval's pearson_delta: Pearson r over genes of the predicted and the real mean minus the mean of "
        "all controls",
        searchable=True,
    ),
    Score(
        MATCHED,
        "pearson_delta<br>plate-matched",
        "pearson_delta against each plate's own control mean, averaged over plates by cells",
        searchable=True,
    ),
    Score(
        PERTURBED_MEAN,
        "Systema<br>pooled",
        "Pearson r over genes of the predicted and the real mean minus the mean of the training perturbations' "
        "real centroids (Systema's reference)",
        searchable=True,
    ),
    Score(
        PERTURBED_MEAN_MATCHED,
        "Systema<br>plate-matched",
        "the same with each plate's own reference (its training perturbations), averaged over plates by cells",
        searchable=True,
    ),
    Score(
        DISCRIMINATION,
        "discrimination<br>(cell-eval, L1)",
        "cell-eval's discrimination_score_l1: how often a prediction lies closer to its own perturbation's real "
        "mean than to the others' (1 always, 0.5 chance)",
        correlation=False,
    ),
    Score(
        MODE_COLLAPSE,
        "mode collapse<br>(pred. \u2212 real r)",
        "mean correlation of a predicted delta with the other perturbations' minus the same for the real deltas: "
        "0 as distinct as the data; collapsed onto one effect, 1 minus the real correlation",
        correlation=False,
        ceiling=False,
        tested=False,
    ),
)
SCORE_NAMES = tuple(s.name for s in SCORES)
CORRELATIONS = tuple(s.name for s in SCORES if s.correlation)


def no_signal(metric: str) -> str:
    """The column holding the share of ``metric`` scored 0 because the prediction had no signal."""
    return NO_SIGNAL_PREFIX + metric
