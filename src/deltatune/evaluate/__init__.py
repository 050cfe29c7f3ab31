"""The evaluation step (rules ``reference``, ``evaluate``, ``ceiling``): scoring with cell-eval.

:mod:`.pairs` builds the real and predicted sides cell-eval compares, :mod:`.reference` Systema's
reference from the training perturbations, :mod:`.scores` runs cell-eval, :mod:`.systematic` adds
the scores for what every perturbation shares. Which scores the report leads with, and how each
is treated, is the catalogue :mod:`deltatune.metrics`.
"""
