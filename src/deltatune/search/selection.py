"""A trial's validation score, and the choice among trials.

The score is the mean over the validation perturbations of the search's metric (by default the
plate-matched ``pearson_delta``: the pooled one also rewards carrying plate offsets through, see
``docs/findings.md``). Ties go to the earlier trial, so the choice is a function of the trials.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputDataError


def trial_record(trial: int, overrides: dict, scores: pd.DataFrame, metric: str) -> dict:
    """What a trial leaves: its settings, its mean validation score and the per-perturbation scores."""
    if metric not in scores:
        raise InputDataError(f"search.metric '{metric}' is not among the trial's scores (the data may lack plates)")
    values = scores.set_index("perturbation")[metric]
    return {
        "trial": trial,
        "overrides": overrides,
        "metric": metric,
        "score": float(np.nanmean(values.to_numpy())),
        "n_validation_perturbations": int(values.notna().sum()),
        "per_perturbation": {str(k): float(v) for k, v in values.items()},
    }


def choose(records: list[dict]) -> tuple[dict, pd.DataFrame]:
    """The best trial's record (highest score, the earliest on a tie) and a table of all trials."""
    table = pd.DataFrame(
        [
            {
                "trial": r["trial"],
                **r["overrides"],
                r["metric"]: r["score"],
                "n_validation_perturbations": r["n_validation_perturbations"],
            }
            for r in records
        ]
    ).sort_values("trial", kind="stable")
    scores = np.array([r["score"] for r in sorted(records, key=lambda r: r["trial"])])
    if not np.isfinite(scores).any():
        raise InputDataError("no search trial has a finite validation score")
    best = sorted(records, key=lambda r: r["trial"])[int(np.nanargmax(scores))]
    return best, table.assign(chosen=table["trial"] == best["trial"]).reset_index(drop=True)
