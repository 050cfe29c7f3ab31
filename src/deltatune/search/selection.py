"""A trial's validation scores, and the choice among trials.

A trial keeps, per validation perturbation, every score a search may choose on (the catalogue's
searchable ones, :mod:`deltatune.metrics`), so that changing ``search.metric`` reruns only the
choice, not the trials. A trial's score is the mean over the validation perturbations of the
search's metric (by default the plate-matched ``pearson_delta``: the pooled one also rewards
carrying plate offsets through, see ``docs/findings.md``). Ties go to the earlier trial, so the
choice is a function of the trials.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..settings.search import METRICS


def trial_record(trial: int, overrides: dict, scores: pd.DataFrame) -> dict:
    """What a trial leaves: its settings and, per validation perturbation, every searchable score it has."""
    by_perturbation = scores.set_index("perturbation")
    return {
        "trial": trial,
        "overrides": overrides,
        "per_perturbation": {
            metric: {str(k): float(v) for k, v in by_perturbation[metric].items()}
            for metric in METRICS
            if metric in by_perturbation
        },
    }


def _score(record: dict, metric: str) -> tuple[float, int]:
    """A trial's mean of ``metric`` over the validation perturbations, and over how many."""
    if metric not in record["per_perturbation"]:
        raise InputDataError(f"search.metric '{metric}' is not among the trials' scores (the data may lack plates)")
    values = np.array(list(record["per_perturbation"][metric].values()), dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"), int(np.isfinite(values).sum())


def choose(records: list[dict], metric: str) -> tuple[dict, pd.DataFrame]:
    """The best trial on ``metric`` (highest mean, the earliest on a tie), as its settings and score,
    and a table of every trial."""
    records = sorted(records, key=lambda r: r["trial"])
    scored = [_score(r, metric) for r in records]
    scores = np.array([score for score, _ in scored])
    if not np.isfinite(scores).any():
        raise InputDataError("no search trial has a finite validation score")
    table = pd.DataFrame(
        [{"trial": r["trial"], **r["overrides"], metric: score, "n_validation_perturbations": n}
         for r, (score, n) in zip(records, scored, strict=True)]
    )  # fmt: skip
    k = int(np.nanargmax(scores))
    best = {"trial": records[k]["trial"], "overrides": records[k]["overrides"], "metric": metric,
            "score": scored[k][0], "n_validation_perturbations": scored[k][1]}  # fmt: skip
    return best, table.assign(chosen=table["trial"] == best["trial"])
