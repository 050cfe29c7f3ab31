"""The baselines: plate-matched effects computed the straightforward way, and never from test cells."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from deltatune.data.splits import cells_of_split
from deltatune.errors import InputDataError, SettingsError
from deltatune.pairing.index import build_pairing_index
from deltatune.predict import baselines


def _index(adata, columns, strategy="batch"):
    return build_pairing_index(adata.obs, columns, strategy).with_means(adata.X)


def _reference_effects(adata, columns, rows, by):
    """Per group of ``by``: mean over its cells of (cell - its plate's control mean), by pandas."""
    X = adata.X.toarray()
    obs = adata.obs
    is_control = (obs[columns.perturbation] == columns.control).to_numpy()
    plate_keys = obs[columns.batch].astype(str) + "|" + obs[columns.cell_type].astype(str)
    plate_means = pd.DataFrame(X[is_control]).groupby(plate_keys.to_numpy()[is_control]).mean()
    residual = X[rows] - plate_means.loc[plate_keys.to_numpy()[rows]].to_numpy()
    keys = obs.iloc[rows][by].astype(str).agg("|".join, axis=1).to_numpy()
    return pd.DataFrame(residual).groupby(keys).mean()


def _test_rows(preprocessed, columns):
    return np.flatnonzero(cells_of_split(preprocessed.target.obs, columns, preprocessed.split, "test"))


def _plate_means_of(target, columns, rows):
    index = _index(target, columns)
    return index.mean_table()[index.restrict(rows).mean_rows()]


def test_mean_delta_adds_the_average_training_effect(preprocessed, columns):
    target, split = preprocessed.target, preprocessed.split
    pred = baselines.predict_baseline("baseline_mean_delta", target, split, columns, _index(target, columns))
    train = np.flatnonzero(cells_of_split(target.obs, columns, split, "train"))
    effect = _reference_effects(target, columns, train, [columns.perturbation]).mean(axis=0).to_numpy()
    test = _test_rows(preprocessed, columns)
    expected = np.clip(_plate_means_of(target, columns, test) + effect, 0, None)
    assert np.allclose(pred[target.obs_names[test]].X, expected, atol=1e-5)
    assert pred.uns["deltatune_inference"]["mode"] == "baseline_mean_delta"


def test_other_lines_adds_the_same_perturbations_effect_elsewhere(preprocessed, columns):
    target, split, base = preprocessed.target, preprocessed.split, preprocessed.base
    pred = baselines.predict_baseline(
        "baseline_other_lines",
        target,
        split,
        columns,
        _index(target, columns),
        base,
        _index(base, columns, "batch_celltype"),
    )
    treated = np.flatnonzero((base.obs[columns.perturbation] != columns.control).to_numpy())
    per_line = _reference_effects(base, columns, treated, [columns.perturbation, columns.cell_type])
    per_pert = per_line.groupby(per_line.index.str.rsplit("|", n=1).str[0]).mean()
    test = _test_rows(preprocessed, columns)
    labels = target.obs[columns.perturbation].astype(str).to_numpy()[test]
    expected = np.clip(_plate_means_of(target, columns, test) + per_pert.loc[labels].to_numpy(), 0, None)
    assert np.allclose(pred[target.obs_names[test]].X, expected, atol=1e-5)


def test_baselines_never_read_test_cells(preprocessed, columns):
    target, split, base = preprocessed.target, preprocessed.split, preprocessed.base
    blinded = target.copy()
    X = blinded.X.toarray()
    X[_test_rows(preprocessed, columns)] = np.nan
    blinded.X = sp.csr_matrix(X)
    index = _index(blinded, columns)
    for pred in (
        baselines.predict_baseline("baseline_mean_delta", blinded, split, columns, index),
        baselines.predict_baseline(
            "baseline_other_lines", blinded, split, columns, index, base, _index(base, columns, "batch_celltype")
        ),
    ):
        assert np.isfinite(pred.X).all()


def test_other_lines_needs_the_perturbation_elsewhere(preprocessed, columns):
    target, split, base = preprocessed.target, preprocessed.split, preprocessed.base
    label = target.obs[columns.perturbation].astype(str).to_numpy()[_test_rows(preprocessed, columns)][0]
    keep = (base.obs[columns.perturbation].astype(str) != label).to_numpy()
    other = base[keep].copy()
    with pytest.raises(InputDataError, match="1 test perturbation\\(s\\) occur in no other line"):
        baselines.predict_baseline(
            "baseline_other_lines",
            target,
            split,
            columns,
            _index(target, columns),
            other,
            _index(other, columns, "batch_celltype"),
        )


def test_the_schema_lists_exactly_the_baselines():
    """A baseline is its function in BASELINES and its name in the config schema, nothing else."""
    import yaml
    from conftest import REPO

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    listed = schema["properties"]["baselines"]
    assert listed["items"]["enum"] == listed["default"] == list(baselines.BASELINES)


def test_an_unknown_baseline_is_named(preprocessed, columns):
    with pytest.raises(SettingsError, match="unknown baseline 'baseline_median'"):
        baselines.predict_baseline(
            "baseline_median", preprocessed.target, preprocessed.split, columns, _index(preprocessed.target, columns)
        )
