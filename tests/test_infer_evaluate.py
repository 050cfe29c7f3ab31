"""Control-mean inference and the cell-eval scoring around it."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from deltatune.data.splits import cells_of_split
from deltatune.errors import InputDataError, SettingsError
from deltatune.evaluate.pairs import evaluation_pair, real_test_cells
from deltatune.evaluate.reference import training_reference
from deltatune.evaluate.scores import score
from deltatune.model.st import BaseModel, build_st_model
from deltatune.pairing.index import build_pairing_index
from deltatune.predict.infer import predict
from deltatune.predict.inputs import control_mean_inputs
from deltatune.settings import Architecture, EvaluateSettings, InferenceSettings, from_mapping


@pytest.fixture
def base(preprocessed, columns):
    torch.manual_seed(0)
    genes = list(preprocessed.target.var_names)
    vocab = sorted(set(preprocessed.base.obs[columns.perturbation].astype(str)))
    model = build_st_model(
        Architecture(hidden_dim=16, n_layers=1, n_heads=2, cell_set_len=8), genes, vocab, columns.control
    )
    return BaseModel(model.eval(), genes, vocab)


def _plates(target, columns):
    return build_pairing_index(target.obs, columns, "batch").with_means(target.X)


def _nan_perturbed(target, columns):
    """The target line with every perturbed cell's expression replaced by NaN."""
    X = target.X.toarray()
    X[(target.obs[columns.perturbation] != columns.control).to_numpy()] = np.nan
    out = target.copy()
    out.X = sp.csr_matrix(X)
    return out


@pytest.mark.parametrize("mode", ["control_mean", "matched_controls"])
def test_inference_never_reads_perturbed_expression(base, preprocessed, columns, mode):
    target, settings = preprocessed.target, InferenceSettings(mode=mode, seed=3)
    clean = predict(base.model, base, target, preprocessed.split, columns, _plates(target, columns), settings)
    blinded_target = _nan_perturbed(target, columns)
    blinded = predict(
        base.model, base, blinded_target, preprocessed.split, columns, _plates(blinded_target, columns), settings
    )
    assert np.isfinite(blinded.X).all()
    assert np.array_equal(clean.X, blinded.X)
    assert blinded.uns["deltatune_inference"]["mode"] == mode


def test_matched_controls_keep_the_spread_of_cells(base, preprocessed, columns):
    """Cells of one perturbation and plate get one input under control_mean, many under matched_controls."""
    target, split = preprocessed.target, preprocessed.split
    index = _plates(target, columns)
    spread = {}
    for mode in ("control_mean", "matched_controls"):
        pred = predict(base.model, base, target, split, columns, index, InferenceSettings(mode=mode))
        predicted = pred[pred.obs["predicted"].to_numpy()]
        groups = predicted.obs.groupby([columns.perturbation, columns.batch], observed=True).indices
        spread[mode] = np.mean([predicted.X[rows].std(axis=0).mean() for rows in groups.values() if len(rows) > 2])
    assert spread["matched_controls"] > 5 * spread["control_mean"]
    with pytest.raises(SettingsError, match="inference.mode 'sampled'"):
        from_mapping(InferenceSettings, {"mode": "sampled"}, "inference")


def test_prediction_holds_test_cells_and_real_controls(base, preprocessed, columns):
    target, split = preprocessed.target, preprocessed.split
    pred = predict(base.model, base, target, split, columns, _plates(target, columns))
    is_control = (target.obs[columns.perturbation] == columns.control).to_numpy()
    is_test = cells_of_split(target.obs, columns, split, "test")
    assert set(pred.obs_names) == set(target.obs_names[is_control | is_test])
    real_controls = target[is_control].X.toarray()
    assert np.array_equal(pred[target.obs_names[is_control]].X, real_controls)
    assert list(pred.var_names) == list(target.var_names)
    assert pred.uns["deltatune_inference"]["mode"] == "control_mean"
    assert not pred.layers, "the predicted expression is held once, in X"
    assert pred.obs["predicted"].sum() == is_test.sum()
    assert not pred[target.obs_names[is_control]].obs["predicted"].any()


def test_control_mean_inputs_use_the_cells_plate(preprocessed, columns):
    target = preprocessed.target
    obs = target.obs
    cells = np.flatnonzero((obs[columns.perturbation] != columns.control).to_numpy())[:20]
    inputs = control_mean_inputs(_plates(target, columns), cells)
    fallback = inputs.fallback_cells
    X = target.X.toarray()
    for i, cell in enumerate(cells):
        plate = obs[columns.batch].iloc[cell]
        ctrl = ((obs[columns.batch] == plate) & (obs[columns.perturbation] == columns.control)).to_numpy()
        assert np.allclose(inputs[i], X[ctrl].mean(axis=0), atol=1e-5)
    assert fallback == 0


def test_plate_without_controls_falls_back_to_global_mean(preprocessed, columns):
    target = preprocessed.target
    obs = target.obs
    plate = obs[columns.batch].iloc[np.flatnonzero((obs[columns.perturbation] != columns.control).to_numpy())[0]]
    keep = ~((obs[columns.batch] == plate) & (obs[columns.perturbation] == columns.control)).to_numpy()
    target = target[keep].copy()
    cells = np.flatnonzero(
        ((target.obs[columns.batch] == plate) & (target.obs[columns.perturbation] != columns.control)).to_numpy()
    )
    inputs = control_mean_inputs(_plates(target, columns), cells)
    fallback = inputs.fallback_cells
    is_control = (target.obs[columns.perturbation] == columns.control).to_numpy()
    assert fallback == len(cells)
    assert np.allclose(inputs[:], target.X[is_control].toarray().mean(axis=0), atol=1e-5)


def _score(pair, split, settings: EvaluateSettings):
    """cell-eval's scores of ``pair`` (Systema's reference from its target's training cells)."""
    return score(pair, training_reference(pair.target, split, pair.columns, pair.var_names), settings, threads=1)


def test_cell_eval_scores_an_aligned_pair(base, preprocessed, columns):
    target, split = preprocessed.target, preprocessed.split
    pred = predict(base.model, base, target, split, columns, _plates(target, columns))
    shuffled = pred[np.random.default_rng(0).permutation(pred.n_obs)].copy()
    pair = evaluation_pair(target, shuffled, split, columns)
    assert list(shuffled.obs_names[pair.positions]) == list(pair.obs.index)
    results = _score(pair, split, EvaluateSettings())
    n_test = split["split"].eq("test").sum()
    assert len(results) == n_test and np.isfinite(results["pearson_delta"]).all()

    truth = real_test_cells(target, split, columns)
    perfect = _score(evaluation_pair(target, truth, split, columns), split, EvaluateSettings())
    assert np.allclose(perfect["pearson_delta"], 1.0)


def test_prediction_missing_cells_is_an_error(base, preprocessed, columns):
    target, split = preprocessed.target, preprocessed.split
    pred = predict(base.model, base, target, split, columns, _plates(target, columns))
    with pytest.raises(InputDataError, match="prediction lacks 3 test or control cell"):
        evaluation_pair(target, pred[3:].copy(), split, columns)


def test_full_profile_adds_de_metrics(base, preprocessed, columns):
    target, split = preprocessed.target, preprocessed.split
    pred = predict(base.model, base, target, split, columns, _plates(target, columns))
    pair = evaluation_pair(target, pred, split, columns)
    fast = _score(pair, split, EvaluateSettings(profile="anndata"))
    full = _score(pair, split, EvaluateSettings(profile="full"))
    assert {"overlap_at_N", "de_spearman_sig"} <= set(full.columns) - set(fast.columns)
    assert np.allclose(full.set_index("perturbation")["pearson_delta"], fast.set_index("perturbation")["pearson_delta"])


def test_the_cell_cap_changes_only_the_cell_level_metrics(base, preprocessed, columns):
    """Mean-based metrics read every cell's mean whatever the cap; energy distance reads the sample."""
    from deltatune.evaluate.pairs import cell_sample

    target, split = preprocessed.target, preprocessed.split
    pair = evaluation_pair(
        target, predict(base.model, base, target, split, columns, _plates(target, columns)), split, columns
    )
    uncapped = EvaluateSettings(cell_cap=10**6, control_cap=10**6)
    capped = EvaluateSettings(cell_cap=3, control_cap=10, seed=1)
    real, _ = cell_sample(pair, capped)
    labels = real.obs[columns.perturbation].astype(str)
    assert (labels == columns.control).sum() == 10 and labels[labels != columns.control].value_counts().max() == 3
    assert cell_sample(pair, capped)[0].obs_names.equals(real.obs_names), "the sample is seeded"
    every, sampled = (_score(pair, split, s).set_index("perturbation") for s in (uncapped, capped))
    means = every.columns.drop(["pearson_edistance", "clustering_agreement"])
    pd.testing.assert_frame_equal(every[means], sampled[means])
    assert not np.isclose(every["pearson_edistance"].iloc[0], sampled["pearson_edistance"].iloc[0])
    assert len(cell_sample(pair, uncapped)[0]) == len(pair.rows), "within the caps every cell is read"


def test_a_prediction_written_to_a_file_is_the_one_built_in_memory(base, preprocessed, columns, tmp_path):
    target, split = preprocessed.target, preprocessed.split
    index = _plates(target, columns)
    in_memory = predict(base.model, base, target, split, columns, index)
    assert predict(base.model, base, target, split, columns, index, out=tmp_path / "p.h5ad") is None
    written = ad.read_h5ad(tmp_path / "p.h5ad")
    assert written.obs_names.equals(in_memory.obs_names) and np.array_equal(written.X, in_memory.X)
    assert written.obs["predicted"].equals(in_memory.obs["predicted"])
    assert written.uns["deltatune_inference"].keys() == in_memory.uns["deltatune_inference"].keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5ad"], "nothing but the file is left"
