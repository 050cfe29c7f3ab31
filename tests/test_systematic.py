"""The scores for what every perturbation shares, on screens built so the answer is known.

Every test perturbation's real effect is a shared part (the same for all) plus its own part; the
"predictions" below reproduce one or the other, and each score must tell them apart.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from deltatune.evaluate import (
    DELTA_CORRELATION_PREDICTED,
    DELTA_CORRELATION_REAL,
    PERTURBED_MEAN,
    PERTURBED_MEAN_MATCHED,
    PRIMARY_METRIC,
)
from deltatune.evaluate.pairs import evaluation_pair
from deltatune.evaluate.scores import score, score_matched
from deltatune.settings import Columns, EvaluateSettings

COLUMNS = Columns(perturbation="pert", control="ctrl", cell_type="line", batch="plate", drug=None, dose=None)
FAST = EvaluateSettings(profile="anndata")
N_GENES, N_PERTS, PLATES, CELLS = 400, 12, 2, 40


@pytest.fixture(scope="module")
def screen():
    """Controls and 12 perturbations on two plates with different offsets; effects = shared + own."""
    rng = np.random.default_rng(0)
    baseline = rng.uniform(5.0, 6.0, N_GENES)  # every value stays in log1p range
    offsets = rng.normal(0.0, 0.3, (PLATES, N_GENES))
    shared = rng.normal(0.0, 1.0, N_GENES)
    own = rng.normal(0.0, 0.8, (N_PERTS, N_GENES))
    labels, plates, means = [], [], []
    for plate in range(PLATES):
        for p in range(-1, N_PERTS):  # -1: the plate's controls
            effect = 0.0 if p < 0 else shared + own[p]
            labels += ["ctrl" if p < 0 else f"p{p:02d}"] * CELLS
            plates += [f"plate{plate}"] * CELLS
            means.append(np.tile(baseline + offsets[plate] + effect, (CELLS, 1)))
    X = np.vstack(means) + rng.normal(0.0, 0.3, (len(labels), N_GENES))
    obs = pd.DataFrame({"pert": labels, "plate": plates, "line": "c"}, index=[f"cell{i}" for i in range(len(labels))])
    real = ad.AnnData(X=np.clip(X, 0.0, None).astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(N_GENES)]))
    split = pd.DataFrame({"perturbation": [f"p{p:02d}" for p in range(N_PERTS)], "split": "test"})
    return real, split, shared, own


def _predict(real: ad.AnnData, effects: dict[str, np.ndarray], seed: int = 1) -> ad.AnnData:
    """Each cell as its plate's control mean plus ``effects[label]``, with per-cell noise."""
    obs = real.obs
    pred = real.copy()
    rng = np.random.default_rng(seed)
    for plate in obs["plate"].unique():
        on_plate = (obs["plate"] == plate).to_numpy()
        control_mean = real.X[on_plate & (obs["pert"] == "ctrl").to_numpy()].mean(axis=0)
        for label, effect in effects.items():
            cells = on_plate & (obs["pert"] == label).to_numpy()
            pred.X[cells] = np.clip(control_mean + effect + rng.normal(0.0, 0.3, (cells.sum(), N_GENES)), 0.0, None)
    return pred


def _scores(real, split, pred) -> pd.Series:
    pair = evaluation_pair(real, pred, split, COLUMNS)
    pooled = score(pair, FAST, threads=1)
    matched, _ = score_matched(pair, threads=1)
    return pooled.merge(matched, on="perturbation").drop(columns="perturbation").mean()


def test_a_prediction_of_only_the_shared_effect_scores_high_pooled_and_zero_centred(screen):
    real, split, shared, own = screen
    systematic = _scores(real, split, _predict(real, {f"p{p:02d}": shared for p in range(N_PERTS)}))
    assert systematic[PRIMARY_METRIC] > 0.7, "the shared part alone looks like a good model against controls"
    assert abs(systematic[PERTURBED_MEAN]) < 0.15 and abs(systematic[PERTURBED_MEAN_MATCHED]) < 0.15

    specific = _scores(real, split, _predict(real, {f"p{p:02d}": shared + own[p] for p in range(N_PERTS)}))
    assert specific[PERTURBED_MEAN] > 0.9 and specific[PERTURBED_MEAN_MATCHED] > 0.9, "the score can be high"


def test_one_effect_for_every_perturbation_shows_a_collapse_ratio_well_above_one(screen):
    real, split, shared, own = screen
    collapsed = _scores(real, split, _predict(real, {f"p{p:02d}": shared + own[0] for p in range(N_PERTS)}))
    ratio = collapsed[DELTA_CORRELATION_PREDICTED] / collapsed[DELTA_CORRELATION_REAL]
    assert collapsed[DELTA_CORRELATION_PREDICTED] > 0.99 and ratio > 1.4

    distinct = _scores(real, split, _predict(real, {f"p{p:02d}": shared + own[p] for p in range(N_PERTS)}))
    assert distinct[DELTA_CORRELATION_PREDICTED] / distinct[DELTA_CORRELATION_REAL] == pytest.approx(1.0, abs=0.05)


def test_an_identical_prediction_for_every_perturbation_scores_zero_not_rounding_noise(screen):
    """Adding one effect to one plate's controls gives every perturbation the same mean up to
    float32 rounding: 0 (it explains no difference between perturbations), not a random number."""
    real, split, shared, _ = screen
    rank = real.obs.groupby("pert", observed=True).cumcount().to_numpy()
    size = real.obs["pert"].map(lambda label: 2 * CELLS if label == "ctrl" else 2 * CELLS - 3 * int(label[1:]) - 1)
    real = real[rank < size.to_numpy()].copy()  # counts differ, so float32 means round differently
    pred = real.copy()
    obs = real.obs
    on_plate = (obs["plate"] == "plate0").to_numpy()
    treated = (obs["pert"] != "ctrl").to_numpy()
    pred.X[treated] = real.X[on_plate & ~treated].mean(axis=0) + shared  # every cell the same profile
    pair = evaluation_pair(real, pred, split, COLUMNS)
    table = score(pair, FAST, threads=1)
    assert (table[PERTURBED_MEAN] == 0.0).all()
    assert np.isfinite(table[PRIMARY_METRIC]).all()
