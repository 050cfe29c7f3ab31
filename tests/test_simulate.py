import dataclasses

import numpy as np
import pandas as pd
import pytest

from deltatune.data.simulate import hill, simulate_screen
from deltatune.errors import SettingsError
from deltatune.settings import ScreenSpec, from_mapping
from deltatune.settings.data import TAHOE_CONTROL


def test_same_seed_same_screen(screen_spec, screen):
    again = simulate_screen(screen_spec)
    assert (again.X != screen.X).nnz == 0
    pd.testing.assert_frame_equal(again.obs, screen.obs)


def test_other_seed_other_screen(screen_spec, screen):
    other = simulate_screen(dataclasses.replace(screen_spec, seed=screen_spec.seed + 1))
    assert other.shape != screen.shape or (other.X != screen.X).nnz > 0


def test_tahoe_columns_and_counts(screen, columns):
    obs = screen.obs
    for name in columns.required():
        assert name in obs
    assert np.array_equal(screen.X.data, np.round(screen.X.data)), "counts are integers"
    controls = obs[columns.perturbation] == TAHOE_CONTROL
    assert (obs.loc[controls, columns.drug] == "DMSO_TF").all()
    assert (obs.loc[controls, columns.dose] == 0.0).all()
    treated = obs[~controls]
    assert (treated.groupby(columns.drug, observed=True)[columns.dose].nunique() == 3).all()
    label = treated.iloc[0]
    assert label[columns.perturbation] == f"[('{label[columns.drug]}', {label[columns.dose]}, 'uM')]"


def test_controls_on_every_plate_and_drugs_on_few(screen, screen_spec, columns):
    obs = screen.obs
    is_control = obs[columns.perturbation] == TAHOE_CONTROL
    plates = obs[columns.batch].unique()
    assert set(obs.loc[is_control, columns.batch].unique()) == set(plates)
    plates_per_drug = (
        obs[~is_control].groupby([columns.cell_type, columns.drug], observed=True)[columns.batch].nunique()
    )
    low, high = screen_spec.plates_per_drug
    assert plates_per_drug.between(low, high).all()
    assert plates_per_drug.max() < screen_spec.plates_per_line, "no drug is on every plate"


def test_plate_offsets_shift_controls(columns):
    """With strong plate effects, control means differ between plates far beyond sampling noise."""
    spec = ScreenSpec(
        n_genes=60,
        cell_lines=("a", "b"),
        plates_per_line=3,
        n_drugs=3,
        controls_per_plate=400,
        plate_effect_sd=1.0,
        seed=3,
    )
    adata = simulate_screen(spec)
    obs = adata.obs
    ctrl = (obs[columns.perturbation] == TAHOE_CONTROL).to_numpy() & (obs[columns.cell_type] == "a").to_numpy()
    logx = np.log1p(adata.X[ctrl].toarray() / adata.X[ctrl].sum(axis=1).A * 1e4)
    means = pd.DataFrame(logx).groupby(obs.loc[ctrl, columns.batch].to_numpy()).mean()
    assert means.std(axis=0).mean() > 0.3


def test_hill_is_monotone_from_zero_to_one():
    doses = np.array([0.0, 0.01, 0.1, 1.0, 10.0, 1e4])
    y = hill(doses, ec50=np.full(6, 0.5), slope=np.full(6, 1.5))
    assert y[0] == 0 and np.all(np.diff(y) > 0) and y[-1] > 0.999


def test_bad_spec_is_rejected():
    with pytest.raises(SettingsError, match="plates_per_drug"):
        from_mapping(ScreenSpec, {"plates_per_line": 2, "plates_per_drug": [1, 3]}, "simulate")
    with pytest.raises(SettingsError, match="n_drug"):
        from_mapping(ScreenSpec, {"n_drug": 4}, "simulate")
