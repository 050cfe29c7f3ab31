"""Scoring predictions with cell-eval, pooled and plate-matched, and the noise ceiling.

:mod:`.pairs` builds the real and predicted sides cell-eval compares, :mod:`.reference` Systema's
reference from the training perturbations, :mod:`.scores` runs cell-eval, :mod:`.systematic` adds
the scores for what every perturbation shares. :mod:`.metrics` names the scores the report
leads with, importable without cell-eval.
"""

from .metrics import (
    DELTA_CORRELATION_PREDICTED,
    DELTA_CORRELATION_REAL,
    DISCRIMINATION,
    MATCHED,
    MATCHED_SUFFIX,
    MODE_COLLAPSE,
    PERTURBED_MEAN,
    PERTURBED_MEAN_MATCHED,
    PRIMARY_METRIC,
)

__all__ = [
    "DELTA_CORRELATION_PREDICTED", "DELTA_CORRELATION_REAL", "DISCRIMINATION", "MATCHED", "MATCHED_SUFFIX",
    "MODE_COLLAPSE", "PERTURBED_MEAN", "PERTURBED_MEAN_MATCHED", "PRIMARY_METRIC",
]
