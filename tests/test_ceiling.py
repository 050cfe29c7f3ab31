"""The two ceilings from split halves: a perfect prediction passes the replicate ceiling and
meets the noise-free bound.

On a screen whose true means are known, the prediction that *is* the true mean of every test
perturbation is the best any model can do. cell-eval's split-half ceiling estimates how another
replicate of the screen would score, which a noise-free prediction beats; the bound
(:mod:`deltatune.report.ceiling`) is what the true effect scores against the noisy data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from screens import COLUMNS, TEST, shared_and_own

from deltatune import roles
from deltatune.evaluate.pairs import evaluation_pair, real_test_cells
from deltatune.evaluate.reference import training_reference
from deltatune.evaluate.scores import ceiling_scores, score, score_matched
from deltatune.metrics import CORRELATIONS
from deltatune.report.ceiling import noise_free_bounds, spearman_brown
from deltatune.report.tables import summarize, tidy_metrics
from deltatune.settings import BootstrapSettings, EvaluateSettings

FAST = EvaluateSettings(profile="anndata")
SPLITS = 5


@pytest.fixture(scope="module")
def truth_and_ceiling() -> pd.DataFrame:
    """The summary of the true means as a prediction, the ceiling and the bound (4 cells per well,
    cell noise sd 1.5 against effects of sd 1.3: a noisy screen)."""
    real, split, _, _, truth = shared_and_own(cells=4, controls=200, noise=1.5, seed=5)
    perfect = real.copy()
    tested = real.obs["pert"].isin(TEST).to_numpy()
    perfect.X[tested] = truth[tested]  # the prediction carries the real controls, as inference does
    pair = evaluation_pair(real, perfect, split, COLUMNS)
    reference = training_reference(real, split, COLUMNS, pair.var_names)
    scores = score(pair, reference, FAST, threads=1).merge(
        score_matched(pair, reference, threads=1)[0], on="perturbation"
    )
    cells = real_test_cells(real, split, COLUMNS)
    halves = [ceiling_scores(cells, reference, COLUMNS, FAST, threads=1, seed=seed) for seed in range(SPLITS)]
    comparison = tidy_metrics({"base": [scores], "ceiling": halves})
    rows = roles.with_bound({"base": roles.BASE, "ceiling": roles.CEILING})
    return summarize(comparison, rows, BootstrapSettings(samples=200), parents={}).set_index("stage")


@pytest.mark.parametrize("metric", CORRELATIONS)
def test_the_true_mean_scores_at_the_bound_and_above_the_replicate_ceiling(truth_and_ceiling, metric):
    perfect, ceiling, bound = (truth_and_ceiling.loc[row, metric] for row in ("base", "ceiling", roles.BOUND_ROW))
    assert perfect == pytest.approx(bound, abs=0.02), "a noise-free prediction reaches the bound"
    assert perfect > ceiling + 0.05, "and passes the replicate ceiling, which a second noisy replicate would reach"


def test_the_bound_is_the_mean_of_per_perturbation_square_roots():
    halves = pd.DataFrame({"a": [0.6, 0.4], "b": [-0.2, -0.1], "c": [np.nan, np.nan]})  # splits x perturbations
    bounds = noise_free_bounds(halves)
    assert bounds["a"] == pytest.approx(np.sqrt(2 * 0.5 / 1.5))
    assert bounds["b"] == 0.0, "a perturbation without reliability bounds at 0"
    assert np.isnan(bounds["c"])
    assert np.isnan(spearman_brown(np.array([0.0]))[0])


def test_the_ceilings_mean_scores_read_every_cell_and_only_de_reads_the_capped_sample():
    """Half-depth means of every cell, CSR or dense, whatever the caps; DE on the capped sample."""
    import dataclasses

    import scipy.sparse as sp

    real, split, *_ = shared_and_own(cells=8, controls=60, noise=1.0, seed=3)
    cells = real_test_cells(real, split, COLUMNS)
    reference = training_reference(real, split, COLUMNS, cells.var_names)
    full = EvaluateSettings(profile="full")
    wide = ceiling_scores(cells, reference, COLUMNS, full, threads=1, seed=0).set_index("perturbation")
    capped_settings = dataclasses.replace(full, cell_cap=3, control_cap=6)
    capped = ceiling_scores(cells, reference, COLUMNS, capped_settings, threads=1, seed=0).set_index("perturbation")
    anndata = ceiling_scores(cells, reference, COLUMNS, FAST, threads=1, seed=0).set_index("perturbation")
    means = list(anndata.columns)
    de = [c for c in wide.columns if c not in means]
    assert de and {"pearson_delta", "pearson_delta_matched", "pearson_delta_perturbed_mean"} <= set(means)
    pd.testing.assert_frame_equal(wide[means], capped[means])
    assert not wide[de].equals(capped.reindex(columns=de)), "the caps reach the DE metrics"
    sparse = cells.copy()
    sparse.X = sp.csr_matrix(sparse.X)
    from_csr = ceiling_scores(sparse, reference, COLUMNS, full, threads=1, seed=0).set_index("perturbation")
    pd.testing.assert_frame_equal(from_csr[means], wide[means], rtol=1e-6)


def test_a_perturbation_of_one_cell_has_no_ceiling_as_in_cell_eval():
    real, split, *_ = shared_and_own(cells=6, controls=40, noise=1.0, seed=2)
    lonely = real.obs["pert"] == TEST[0]
    real = real[~lonely | (lonely.cumsum() == 1).to_numpy()].copy()  # one cell of TEST[0] left
    cells = real_test_cells(real, split, COLUMNS)
    reference = training_reference(real, split, COLUMNS, cells.var_names)
    halves = ceiling_scores(cells, reference, COLUMNS, FAST, threads=1, seed=0)
    assert TEST[0] not in set(halves["perturbation"]) and set(TEST[1:]) <= set(halves["perturbation"])
    assert halves.drop(columns="perturbation").notna().all().all()
