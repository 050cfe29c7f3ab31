"""Scoring predictions with cell-eval, pooled and plate-matched, and the noise ceiling.

:mod:`.pairs` builds the real and predicted AnnData cell-eval compares, :mod:`.scores` runs it,
:mod:`.systematic` adds the scores for what every perturbation shares. The metric names the
report leads with are defined here, importable without cell-eval.
"""

PRIMARY_METRIC = "pearson_delta"
MATCHED_SUFFIX = "_matched"  # a metric against each plate's own controls
MATCHED = PRIMARY_METRIC + MATCHED_SUFFIX
PERTURBED_MEAN = PRIMARY_METRIC + "_perturbed_mean"  # deltas against the mean perturbation (Systema)
PERTURBED_MEAN_MATCHED = PERTURBED_MEAN + MATCHED_SUFFIX
DISCRIMINATION = "discrimination_score_l1"  # cell-eval's: is each prediction closest to its own perturbation?
DELTA_CORRELATION_PREDICTED = "delta_correlation_predicted"  # mean correlation of a prediction's delta with the others'
DELTA_CORRELATION_REAL = "delta_correlation_real"
