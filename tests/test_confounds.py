"""Confound-aware evaluation: plate-matched scores, the zero-effect floor and the noise ceiling."""

from __future__ import annotations

from dataclasses import replace

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from deltatune.data.preprocess import preprocess
from deltatune.data.simulate import simulate_screen
from deltatune.evaluate.pairs import evaluation_pair, real_test_cells
from deltatune.evaluate.reference import training_reference
from deltatune.evaluate.scores import ceiling_scores, score, score_matched
from deltatune.pairing.index import build_pairing_index
from deltatune.predict.baselines import predict_baseline
from deltatune.report.ceiling import full_depth
from deltatune.settings import EvaluateSettings, PreprocessSettings, SplitSettings

FAST = EvaluateSettings(profile="anndata")


@pytest.fixture(scope="module", params=[0.0, 0.6], ids=["no_plate_effects", "strong_plate_effects"])
def screen(request, screen_spec, columns):
    """The tiny screen, larger wells, with plate offsets of per-gene sd ``request.param``."""
    spec = replace(screen_spec, plate_effect_sd=request.param, cells_per_well=30, controls_per_plate=60, n_drugs=12)
    settings = PreprocessSettings(
        target_cell_line="c", n_top_genes=60, split=SplitSettings(val_fraction=0.0, test_fraction=0.5)
    )
    data = preprocess(simulate_screen(spec), columns, settings)
    return request.param, data.target, data.split


def _pooled_and_matched(target, split, pred, columns) -> tuple[float, float]:
    pair = evaluation_pair(target, pred, split, columns)
    reference = training_reference(target, split, columns, pair.var_names)
    pooled = score(pair, reference, FAST, threads=1)["pearson_delta"].mean()
    matched, info = score_matched(pair, reference, threads=1)
    assert info["batches"] >= 2
    return pooled, matched["pearson_delta_matched"].mean()


def _noisy_truth(target, split, columns, sd: float, seed: int = 0) -> ad.AnnData:
    """A 'model' that predicts every test cell as its real expression plus Gaussian noise."""
    real = real_test_cells(target, split, columns)
    pred = real.copy()
    treated = (pred.obs[columns.perturbation] != columns.control).to_numpy()
    noise = np.random.default_rng(seed).normal(0, sd, (treated.sum(), pred.n_vars)).astype(np.float32)
    pred.X[treated] = np.clip(pred.X[treated] + noise, 0, 14.0)  # cell-eval checks the log1p range
    return pred


def test_floor_is_high_on_pooled_and_zero_on_matched_only_with_plate_effects(screen, columns):
    plate_sd, target, split = screen
    index = build_pairing_index(target.obs, columns, "batch").with_means(target.X)
    pooled, matched = _pooled_and_matched(
        target, split, predict_baseline("baseline_plate_control", target, split, columns, index), columns
    )
    assert abs(matched) < 0.15
    if plate_sd > 0:
        assert pooled > 0.4, "plate offsets make the no-effect floor look like a good model"
    else:
        assert abs(pooled) < 0.2


def test_pooled_and_matched_agree_without_plate_effects(screen, columns):
    plate_sd, target, split = screen
    pooled, matched = _pooled_and_matched(target, split, _noisy_truth(target, split, columns, sd=0.5), columns)
    if plate_sd == 0:
        assert abs(pooled - matched) < 0.1
    assert matched > 0.3


def test_ceiling_from_real_cells_beats_a_noisy_truth(screen, columns):
    """The ceiling takes the real cells only (no prediction exists in its signature or CLI)."""
    _, target, split = screen
    real = real_test_cells(target, split, columns)
    reference = training_reference(target, split, columns, real.var_names)
    halves = ceiling_scores(real, reference, columns, FAST, threads=1, seed=0)
    pd.testing.assert_frame_equal(halves, ceiling_scores(real, reference, columns, FAST, threads=1, seed=0))
    assert not halves.equals(ceiling_scores(real, reference, columns, FAST, threads=1, seed=1)), (
        "the split depends on the seed"
    )
    ceiling = full_depth(halves.drop(columns="perturbation").mean())
    noisy = _noisy_truth(target, split, columns, sd=2.0)
    pooled, matched = _pooled_and_matched(target, split, noisy, columns)
    assert ceiling["pearson_delta"] > pooled
    assert ceiling["pearson_delta_matched"] > matched
    assert np.isnan(ceiling["mse"]), "error metrics have no ceiling (cell-eval's rule)"
