"""The scores for what every perturbation shares, on screens built so the answer is known.

Every perturbation's real effect is a shared part (the same for all) plus its own part; 8
perturbations are training perturbations (they make Systema's reference), 12 are scored. The
"predictions" below reproduce one part or the other, and each score must tell them apart.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from screens import COLUMNS, N_GENES, N_TRAIN, TEST, shared_and_own

from deltatune.evaluate.pairs import evaluation_pair
from deltatune.evaluate.reference import training_reference
from deltatune.evaluate.scores import score, score_matched
from deltatune.metrics import (
    DELTA_CORRELATION_PREDICTED,
    DELTA_CORRELATION_REAL,
    MATCHED,
    MODE_COLLAPSE,
    PERTURBED_MEAN,
    PERTURBED_MEAN_MATCHED,
    PRIMARY_METRIC,
    no_signal,
)
from deltatune.settings import EvaluateSettings

FAST = EvaluateSettings(profile="anndata")
CELLS = 40


@pytest.fixture(scope="module")
def screen():
    return shared_and_own(cells=CELLS, controls=CELLS, noise=0.3)


def _predict(real: ad.AnnData, effects: dict[str, np.ndarray], seed: int = 1) -> ad.AnnData:
    """Each test cell as its plate's control mean plus ``effects[label]``, with per-cell noise."""
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


def _tables(real, split, pred) -> tuple[pd.DataFrame, pd.DataFrame]:
    pair = evaluation_pair(real, pred, split, COLUMNS)
    reference = training_reference(real, split, COLUMNS, pair.var_names)
    matched, _ = score_matched(pair, reference, threads=1)
    return score(pair, reference, FAST, threads=1), matched


def _scores(real, split, pred) -> pd.Series:
    pooled, matched = _tables(real, split, pred)
    return pooled.merge(matched, on="perturbation").drop(columns="perturbation").mean()


def _centroid(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return X[mask].astype(np.float64).mean(axis=0)


def test_systemas_score_is_its_formula_computed_independently(screen):
    """numpy, outside the package, on an unbalanced screen (wells of 10 to 40 cells; p00 only on
    plate0): the reference is the unweighted mean over the training perturbations of each one's
    centroid over all its cells (per plate: over the plate's training perturbations and their cells
    there), and the matched score averages plates weighted by the perturbation's cells."""
    real, split, shared, own = screen[:4]
    rng = np.random.default_rng(7)
    keep = rng.random(real.n_obs) < rng.uniform(0.25, 1.0, real.n_obs // CELLS).repeat(CELLS)
    keep &= ~((real.obs["pert"] == "p00") & (real.obs["plate"] == "plate1")).to_numpy()
    keep |= (real.obs["pert"] == "ctrl").to_numpy()
    real = real[keep].copy()
    pred = _predict(real, {label: shared + 0.5 * own[int(label[1:])] for label in TEST})
    pooled, matched = (t.set_index("perturbation") for t in _tables(real, split, pred))
    labels, plates = real.obs["pert"].to_numpy(), real.obs["plate"].to_numpy()
    train = [f"p{p:02d}" for p in range(N_TRAIN)]

    def systema(on: np.ndarray, label: str) -> float:
        reference = np.mean(
            [_centroid(real.X, on & (labels == t)) for t in train if (on & (labels == t)).any()], axis=0
        )
        y = _centroid(pred.X, on & (labels == label)) - reference
        r = _centroid(real.X, on & (labels == label)) - reference
        return float(np.corrcoef(y, r)[0, 1])

    everywhere = np.ones(real.n_obs, dtype=bool)
    for label in TEST:
        assert pooled.loc[label, PERTURBED_MEAN] == pytest.approx(systema(everywhere, label), abs=1e-6)
        on = {plate: plates == plate for plate in ("plate0", "plate1")}
        cells = [int((on[plate] & (labels == label)).sum()) for plate in on]
        per_plate = [systema(on[plate], label) for plate in on]
        assert matched.loc[label, PERTURBED_MEAN_MATCHED] == pytest.approx(
            np.average(per_plate, weights=cells), abs=1e-6
        )


def test_a_wrong_shared_response_scores_lower_and_a_shared_one_alone_scores_low(screen):
    """Subtracting each side's own mean over the test perturbations (the formula this score had
    before) cancels any shared component, right or wrong; Systema's training reference does not."""
    real, split, shared, own = screen[:4]
    right = _scores(real, split, _predict(real, {label: shared + own[int(label[1:])] for label in TEST}))
    wrong = _scores(real, split, _predict(real, {label: -shared + own[int(label[1:])] for label in TEST}))
    assert right[PERTURBED_MEAN] > 0.9 and right[PERTURBED_MEAN_MATCHED] > 0.9, "the score can be high"
    assert wrong[PERTURBED_MEAN] < right[PERTURBED_MEAN] - 0.3
    assert wrong[PERTURBED_MEAN_MATCHED] < right[PERTURBED_MEAN_MATCHED] - 0.3

    systematic = _scores(real, split, _predict(real, {label: shared for label in TEST}))
    assert systematic[PRIMARY_METRIC] > 0.7, "the shared part alone looks like a good model against controls"
    assert systematic[PERTURBED_MEAN] < 0.5 and systematic[PERTURBED_MEAN_MATCHED] < 0.5


def test_the_collapse_measure_tells_collapsed_distinct_and_no_effect_predictions_apart(screen):
    real, split, shared, own = screen[:4]
    distinct = _scores(real, split, _predict(real, {label: shared + own[int(label[1:])] for label in TEST}))
    collapsed = _scores(real, split, _predict(real, {label: shared + own[0] for label in TEST}))
    nothing = _scores(real, split, _predict(real, {label: np.zeros(N_GENES) for label in TEST}, seed=2))
    assert distinct[MODE_COLLAPSE] == pytest.approx(0.0, abs=0.05)
    assert collapsed[DELTA_CORRELATION_PREDICTED] > 0.99
    assert collapsed[MODE_COLLAPSE] == pytest.approx(1.0 - collapsed[DELTA_CORRELATION_REAL], abs=0.01)
    assert collapsed[MODE_COLLAPSE] > distinct[MODE_COLLAPSE] + 0.3
    # a no-effect prediction (noise around the control mean) is as uncorrelated as noise: not collapsed
    assert abs(nothing[DELTA_CORRELATION_PREDICTED]) < 0.05 and nothing[MODE_COLLAPSE] < 0.0


@pytest.fixture(scope="module")
def large_wells():
    """Wells of 10,000 to 10,011 cells on each plate (20 genes): the scale at which float32 means
    of identical rows stop agreeing."""
    rng = np.random.default_rng(3)
    labels, plates = [], []
    for plate in ("plate0", "plate1"):
        sizes = {"ctrl": 12_000, **{f"p{p:02d}": 10_000 + p for p in range(6)}}
        for label, n in sizes.items():
            labels += [label] * n
            plates += [plate] * n
    obs = pd.DataFrame({"pert": labels, "plate": plates, "line": "c"}, index=[f"cell{i}" for i in range(len(labels))])
    X = rng.uniform(0.0, 6.0, (len(labels), 20)).astype(np.float32)
    real = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(20)]))
    split = pd.DataFrame({"perturbation": [f"p{p:02d}" for p in range(6)], "split": ["train"] * 2 + ["test"] * 4})
    return real, split


def test_a_prediction_of_each_plates_control_mean_scores_zero_at_well_sizes_of_ten_thousand(large_wells):
    """The floor: every test cell is its plate's control mean (float32, as the pairing index
    stores it). Its delta against the plate's controls is rounding only, so its plate-matched
    correlations are 0 and marked, not a correlation of rounding noise."""
    real, split = large_wells
    pred = real.copy()
    obs = real.obs
    for plate in ("plate0", "plate1"):
        on_plate = (obs["plate"] == plate).to_numpy()
        controls = on_plate & (obs["pert"] == "ctrl").to_numpy()
        pred.X[on_plate & ~controls] = real.X[controls].astype(np.float64).mean(axis=0).astype(np.float32)
    pooled, matched = (t.set_index("perturbation") for t in _tables(real, split, pred))
    assert (matched[MATCHED] == 0.0).all() and (matched[no_signal(MATCHED)] == 1.0).all()
    assert (matched[no_signal(PERTURBED_MEAN_MATCHED)] == 0.0).all(), "the reference is not the control mean"
    # the plates hold the same numbers of cells of everything, so pooled too the prediction is the controls' mean
    assert (pooled[PRIMARY_METRIC] == 0.0).all() and (pooled[no_signal(PRIMARY_METRIC)] == 1.0).all()
    assert (pooled[DELTA_CORRELATION_PREDICTED] == 0.0).all()
    assert (pooled[no_signal(DELTA_CORRELATION_PREDICTED)] == 1.0).all()

    same = real.copy()  # one profile for every test cell of a plate, equal to the plate's reference
    for plate in ("plate0", "plate1"):
        on_plate = (obs["plate"] == plate).to_numpy()
        train = on_plate & obs["pert"].isin(["p00", "p01"]).to_numpy()
        centroids = [
            real.X[train & (obs["pert"] == t).to_numpy()].astype(np.float64).mean(axis=0) for t in ("p00", "p01")
        ]
        tested = on_plate & obs["pert"].isin(split.loc[split["split"] == "test", "perturbation"]).to_numpy()
        same.X[tested] = np.mean(centroids, axis=0).astype(np.float32)
    _, matched = (t.set_index("perturbation") for t in _tables(real, split, same))
    assert (matched[PERTURBED_MEAN_MATCHED] == 0.0).all() and (matched[no_signal(PERTURBED_MEAN_MATCHED)] == 1.0).all()


def test_a_plate_without_training_perturbations_falls_back_to_the_pooled_reference(screen):
    real, split, shared, own = screen[:4]
    drop = (real.obs["plate"] == "plate1").to_numpy() & real.obs["pert"].isin(
        [f"p{p:02d}" for p in range(N_TRAIN)]
    ).to_numpy()
    real = real[~drop].copy()
    pred = _predict(real, {label: shared + own[int(label[1:])] for label in TEST})
    pair = evaluation_pair(real, pred, split, COLUMNS)
    reference = training_reference(real, split, COLUMNS, pair.var_names)
    _, info = score_matched(pair, reference, threads=1)
    assert info["reference_fallback_plates"] == ["plate1"]
    assert np.array_equal(reference.of_plate("plate1"), reference.pooled)
