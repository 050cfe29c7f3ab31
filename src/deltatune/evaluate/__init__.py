"""Scoring predictions with cell-eval, pooled and plate-matched, and the noise ceiling.

:mod:`.pairs` builds the real and predicted AnnData cell-eval compares, :mod:`.scores` runs it.
The metric names the report leads with are defined here, importable without cell-eval.
"""

PRIMARY_METRIC = "pearson_delta"
MATCHED_SUFFIX = "_matched"  # a metric against each plate's own controls
MATCHED = PRIMARY_METRIC + MATCHED_SUFFIX
