import numpy as np
import pandas as pd
import pytest

from deltatune.data.means import group_means
from deltatune.errors import InputDataError, SettingsError
from deltatune.model.cellsets import make_cell_sets
from deltatune.pairing.index import PairingIndex, build_pairing_index
from deltatune.settings import Columns

CTRL = Columns().control


def _obs(plates_with_controls=("p1", "p2"), n=200, seed=0):
    rng = np.random.default_rng(seed)
    plate = rng.choice(["p1", "p2", "p3"], size=n)
    line = rng.choice(["a", "b"], size=n)
    pert = np.where(rng.random(n) < 0.3, CTRL, rng.choice(["d1", "d2"], size=n))
    pert[(pert == CTRL) & ~np.isin(plate, plates_with_controls)] = "d1"
    obs = pd.DataFrame({"drugname_drugconc": pert, "plate": plate, "cell_line": line})
    obs.index = [f"cell{i}" for i in range(n)]
    return obs


def _index(obs, strategy, seed=0):
    X = np.random.default_rng(seed).random((len(obs), 5)).astype(np.float32)
    return build_pairing_index(obs, Columns(), strategy).with_means(X)


def test_batch_pairing_never_crosses_plates_with_controls():
    obs = _obs()
    index = _index(obs, "batch")
    paired = index.draw(np.random.default_rng(1))
    plate = obs["plate"].to_numpy()
    has_controls = np.isin(plate[index.perturbed], ["p1", "p2"])
    assert (obs["drugname_drugconc"].to_numpy()[paired] == CTRL).all()
    assert (plate[paired][has_controls] == plate[index.perturbed][has_controls]).all()


def test_batch_celltype_pairing_matches_both():
    obs = _obs(plates_with_controls=("p1", "p2", "p3"), n=2000)
    index = _index(obs, "batch_celltype")
    paired = index.draw(np.random.default_rng(2))
    ok = index.count[index.perturbed_group] > 0
    for col in ("plate", "cell_line"):
        v = obs[col].to_numpy()
        assert (v[paired][ok] == v[index.perturbed][ok]).all()


def test_fallback_is_counted_and_random():
    obs = _obs(plates_with_controls=("p1",))
    index = _index(obs, "batch")
    on_p_without = np.isin(obs["plate"].to_numpy()[index.perturbed], ["p2", "p3"])
    summary = index.summary()
    assert summary["fallback_cells"] == on_p_without.sum() > 0
    assert summary["fallback_groups"] == 2
    paired = index.draw(np.random.default_rng(3))
    assert (obs["drugname_drugconc"].to_numpy()[paired] == CTRL).all()


def test_draws_are_reproducible_per_seed():
    index = _index(_obs(), "batch")
    a, b = index.draw(np.random.default_rng(7)), index.draw(np.random.default_rng(7))
    c = index.draw(np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_random_pairing_uses_all_controls():
    obs = _obs(n=5000)
    index = _index(obs, "random")
    paired = index.draw(np.random.default_rng(0))
    assert set(obs["plate"].to_numpy()[paired]) == {"p1", "p2"}
    assert index.summary()["fallback_cells"] == 0


def test_unknown_strategy_and_missing_batch_column():
    with pytest.raises(SettingsError, match="unknown pairing strategy 'plate'"):
        _index(_obs(), "plate")
    with pytest.raises(SettingsError, match="needs data.columns.batch"):
        build_pairing_index(_obs(), Columns(batch=None), "batch")


def test_index_means_are_control_means_per_group(tmp_path):
    obs = _obs(plates_with_controls=("p1", "p2"), n=300)
    X = np.random.default_rng(4).random((300, 6)).astype(np.float32)
    index = build_pairing_index(obs, Columns(), "batch").with_means(X)
    is_control = (obs["drugname_drugconc"] == CTRL).to_numpy()
    expected = pd.DataFrame(X[is_control]).groupby(obs["plate"].to_numpy()[is_control]).mean()
    plates = index.keys["plate"].tolist()
    assert plates == ["p1", "p2", "p3"]
    assert np.allclose(index.means[:2], expected.loc[["p1", "p2"]].to_numpy(), atol=1e-6)
    assert np.isnan(index.means[2]).all()
    assert np.allclose(index.overall, X[is_control].mean(axis=0), atol=1e-6)
    rows = index.mean_rows()
    on_p3 = obs["plate"].to_numpy()[index.perturbed] == "p3"
    assert (rows[on_p3] == 3).all() and np.allclose(index.mean_table()[3], index.overall)

    index.save(tmp_path / "index.npz", obs.index)
    loaded = PairingIndex.load(tmp_path / "index.npz")
    assert loaded.strategy == "batch" and loaded.keys.equals(index.keys) and loaded.n_obs == len(obs)
    assert np.array_equal(loaded.draw(np.random.default_rng(1)), index.draw(np.random.default_rng(1)))
    assert np.array_equal(loaded.means, index.means, equal_nan=True)
    loaded.check_rows_of(obs.index, "data")
    with pytest.raises(InputDataError, match="does not belong to data"):
        loaded.check_rows_of(obs.index[::-1], "data")


def test_restrict_keeps_only_the_given_perturbed_rows():
    obs = _obs(n=100)
    index = _index(obs, "batch")
    subset = index.perturbed[::3]
    restricted = index.restrict(subset)
    assert np.array_equal(restricted.perturbed, subset)
    assert np.array_equal(restricted.perturbed_group, index.perturbed_group[::3])


def test_group_means_equal_pandas_groupby():
    rng = np.random.default_rng(0)
    X = rng.random((50, 7)).astype(np.float32)
    codes = rng.integers(0, 4, size=50)
    codes[codes == 2] = 3  # group 2 is empty
    codes[:5] = -1  # rows left out
    means = group_means(X, codes, 5)
    expected = pd.DataFrame(X[5:]).groupby(codes[5:]).mean()
    assert np.allclose(means[expected.index], expected.to_numpy(), atol=1e-6)
    assert np.isnan(means[[2, 4]]).all()


def test_group_means_accept_sparse():
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    X = sp.random(30, 6, density=0.3, format="csr", random_state=1)
    codes = rng.integers(0, 3, size=30)
    assert np.allclose(group_means(X, codes, 3), group_means(X.toarray(), codes, 3))


def test_means_of_identical_rows_agree_in_wells_of_ten_thousand_cells_and_across_blocks(monkeypatch):
    """Float64 sums: one float32 profile repeated in groups of 10,000 to 10,500 rows gives the same
    mean for every group to 1e-11 (a float32 sum is off by about 1e-4), whatever the block size."""
    import deltatune.data.means as means_module

    profile = np.random.default_rng(2).uniform(0, 8, 50).astype(np.float32)
    sizes = [10_000, 10_123, 10_500]
    codes = np.repeat(np.arange(3), sizes)
    X = np.tile(profile, (len(codes), 1))
    assert np.abs(group_means(X, codes, 3) - profile).max() <= 1e-11 * profile.max()
    monkeypatch.setattr(means_module, "BLOCK_VALUES", 50 * 777)  # blocks that cut through groups
    assert np.abs(group_means(X, codes, 3) - profile).max() <= 1e-11 * profile.max()


def test_cell_sets_cover_every_cell_once_within_its_group():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 6, size=101)
    sets, filled = make_cell_sets(groups, 8, np.random.default_rng(1))
    assert sets.shape[1] == 8
    assert sorted(sets[filled]) == list(range(101))
    assert all(len(set(groups[row])) == 1 for row in sets), "a set never mixes groups"
    sizes = np.bincount(groups)
    assert len(sets) == (-(-sizes // 8)).sum()
