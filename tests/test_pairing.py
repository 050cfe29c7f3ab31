import numpy as np
import pandas as pd
import pytest

from deltatune.cellsets import make_cell_sets
from deltatune.columns import Columns
from deltatune.control_means import group_means
from deltatune.errors import SettingsError
from deltatune.pairing import build_pairing_index

CTRL = Columns().control


def _obs(plates_with_controls=("p1", "p2"), n=200, seed=0):
    rng = np.random.default_rng(seed)
    plate = rng.choice(["p1", "p2", "p3"], size=n)
    line = rng.choice(["a", "b"], size=n)
    pert = np.where(rng.random(n) < 0.3, CTRL, rng.choice(["d1", "d2"], size=n))
    pert[(pert == CTRL) & ~np.isin(plate, plates_with_controls)] = "d1"
    return pd.DataFrame({"drugname_drugconc": pert, "plate": plate, "cell_line": line})


def test_batch_pairing_never_crosses_plates_with_controls():
    obs = _obs()
    index = build_pairing_index(obs, Columns(), "batch")
    paired = index.draw(np.random.default_rng(1))
    plate = obs["plate"].to_numpy()
    has_controls = np.isin(plate[index.perturbed], ["p1", "p2"])
    assert (obs["drugname_drugconc"].to_numpy()[paired] == CTRL).all()
    assert (plate[paired][has_controls] == plate[index.perturbed][has_controls]).all()


def test_batch_celltype_pairing_matches_both():
    obs = _obs(plates_with_controls=("p1", "p2", "p3"), n=2000)
    index = build_pairing_index(obs, Columns(), "batch_celltype")
    paired = index.draw(np.random.default_rng(2))
    ok = index.count[index.perturbed_group] > 0
    for col in ("plate", "cell_line"):
        v = obs[col].to_numpy()
        assert (v[paired][ok] == v[index.perturbed][ok]).all()


def test_fallback_is_counted_and_random():
    obs = _obs(plates_with_controls=("p1",))
    index = build_pairing_index(obs, Columns(), "batch")
    on_p_without = np.isin(obs["plate"].to_numpy()[index.perturbed], ["p2", "p3"])
    summary = index.summary()
    assert summary["fallback_cells"] == on_p_without.sum() > 0
    assert summary["fallback_groups"] == 2
    paired = index.draw(np.random.default_rng(3))
    assert (obs["drugname_drugconc"].to_numpy()[paired] == CTRL).all()


def test_draws_are_reproducible_per_seed():
    index = build_pairing_index(_obs(), Columns(), "batch")
    a, b = index.draw(np.random.default_rng(7)), index.draw(np.random.default_rng(7))
    c = index.draw(np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_random_pairing_uses_all_controls():
    obs = _obs(n=5000)
    index = build_pairing_index(obs, Columns(), "random")
    paired = index.draw(np.random.default_rng(0))
    assert set(obs["plate"].to_numpy()[paired]) == {"p1", "p2"}
    assert index.summary()["fallback_cells"] == 0


def test_unknown_strategy_and_missing_batch_column():
    with pytest.raises(SettingsError, match="unknown pairing strategy 'plate'"):
        build_pairing_index(_obs(), Columns(), "plate")
    with pytest.raises(SettingsError, match="needs data.columns.batch"):
        build_pairing_index(_obs(), Columns(batch=None), "batch")


def test_group_means_equal_pandas_groupby():
    rng = np.random.default_rng(0)
    X = rng.random((50, 7)).astype(np.float32)
    codes = rng.integers(0, 4, size=50)
    codes[codes == 2] = 3  # group 2 is empty
    means = group_means(X, codes, 5)
    expected = pd.DataFrame(X).groupby(codes).mean()
    assert np.allclose(means[expected.index], expected.to_numpy(), atol=1e-6)
    assert np.isnan(means[[2, 4]]).all()


def test_group_means_accept_sparse():
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    X = sp.random(30, 6, density=0.3, format="csr", random_state=1)
    codes = rng.integers(0, 3, size=30)
    assert np.allclose(group_means(X, codes, 3), group_means(X.toarray(), codes, 3))


def test_cell_sets_cover_every_cell_once_within_its_group():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 6, size=101)
    sets, filled = make_cell_sets(groups, 8, np.random.default_rng(1))
    assert sets.shape[1] == 8
    assert sorted(sets[filled]) == list(range(101))
    assert all(len(set(groups[row])) == 1 for row in sets), "a set never mixes groups"
    sizes = np.bincount(groups)
    assert len(sets) == (-(-sizes // 8)).sum()
