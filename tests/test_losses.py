import numpy as np
import pytest
import torch

from deltatune.errors import SettingsError
from deltatune.settings import LossWeights, from_mapping
from deltatune.train.losses import DeltaAwareLoss, cell_set_correlation, gene_correlation


def _tensors(seed=0, shape=(3, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=g, dtype=torch.float64) for _ in range(3)]


def test_components_match_a_hand_computation():
    pred, target, ctrl = _tensors()
    weights = LossWeights(base=1.0, delta_mse=0.5, delta_pearson=0.3)
    loss = DeltaAwareLoss(lambda p, t: ((p - t) ** 2).mean(dim=(1, 2)), weights)
    parts = loss(pred, target, ctrl)

    p, t, c = (x.numpy() for x in (pred, target, ctrl))
    base = ((p - t) ** 2).mean()
    dp, dt = p - c, t - c
    delta_mse = ((dp - dt) ** 2).mean()
    r = [np.corrcoef(dp[b].ravel(), dt[b].ravel())[0, 1] for b in range(3)]
    delta_pearson = 1 - np.mean(r)
    assert parts["base"].item() == pytest.approx(base)
    assert parts["delta_mse"].item() == pytest.approx(delta_mse)
    assert parts["delta_pearson"].item() == pytest.approx(delta_pearson, abs=1e-6)
    assert parts["total"].item() == pytest.approx(base + 0.5 * delta_mse + 0.3 * delta_pearson, abs=1e-6)


def test_gene_mode_masks_constant_genes():
    pred, target, ctrl = _tensors(1)
    target[..., 2] = ctrl[..., 2]  # gene 2 has no true effect: zero variance of the true delta
    r = gene_correlation(pred - ctrl, target - ctrl, eps=1e-8).item()
    dp = (pred - ctrl).reshape(-1, 5).numpy()
    dt = (target - ctrl).reshape(-1, 5).numpy()
    expected = np.mean([np.corrcoef(dp[:, g], dt[:, g])[0, 1] for g in (0, 1, 3, 4)])
    assert r == pytest.approx(expected, abs=1e-6)


def test_perfect_delta_gives_zero_pearson_loss():
    pred, _, ctrl = _tensors(2)
    assert cell_set_correlation(pred - ctrl, pred - ctrl, 1e-8).numpy() == pytest.approx(1.0)
    assert gene_correlation(pred - ctrl, 2 * (pred - ctrl), 1e-8).item() == pytest.approx(1.0)


def test_bad_weights_are_rejected():
    with pytest.raises(SettingsError, match="pearson_mode"):
        from_mapping(LossWeights, {"pearson_mode": "genes"}, "loss")
    with pytest.raises(SettingsError, match="at least one"):
        from_mapping(LossWeights, {"base": 0}, "loss")


def test_set_mean_mode_is_pearson_delta_of_each_set():
    pred, target, ctrl = _tensors(3)
    loss = DeltaAwareLoss(
        lambda p, t: ((p - t) ** 2).mean(dim=(1, 2)), LossWeights(delta_pearson=1.0, pearson_mode="set_mean")
    )
    parts = loss(pred, target, ctrl)
    p, t, c = (x.numpy() for x in (pred, target, ctrl))
    r = [np.corrcoef(p[b].mean(0) - c[b].mean(0), t[b].mean(0) - c[b].mean(0))[0, 1] for b in range(3)]
    assert parts["delta_pearson"].item() == pytest.approx(1 - np.mean(r), abs=1e-6)
