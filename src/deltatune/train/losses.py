"""The fine-tuning loss: the model's own loss plus terms on the perturbation effect (delta).

``total = base * model_loss(pred, target)
        + delta_mse * MSE(pred - ctrl, target - ctrl)
        + delta_pearson * (1 - corr(pred - ctrl, target - ctrl))
        - diversity * min(1, Var_drugs(mean predicted delta) / Var_drugs(mean real delta))
        + plate_adversarial * CE(plate | reversed-gradient basal embedding)``

Note what the algebra says about the delta MSE term: per cell, ``(pred - ctrl) - (target - ctrl)``
is ``pred - target``, so it equals a plain MSE on expression; only the correlation term changes
what is optimized, because centring and scaling do not commute with subtracting the control.
Both are kept as the design specifies, and every component is returned so it can be logged.

The correlation is computed per cell set (seed 002: each set's deltas flattened, centred and
correlated), per gene across all cells of the batch (seed 000: genes whose delta variance is
below ``eps`` are masked out), or per cell set on its mean delta over genes (``set_mean``): the
mean predicted minus mean control profile against the mean real minus mean control profile,
which is ``pearson_delta`` computed on one cell set. Per-cell deltas are dominated by sampling
noise of single cells; the set mean averages it out, as the metric does.

The drug-diversity regularizer (design.md 2.6) rewards predictions that tell drugs apart, against
the collapse onto one shared effect. The spread of a batch's deltas is each drug's mean delta over
its sets in the batch, then the variance across those drugs per gene, averaged over genes. The
reward is the predicted spread as a share of the real spread of the same batch, capped at 1: it
pulls collapsed predictions apart up to the spread the data show and not beyond, so that a large
weight cannot buy loss by inflating effects without bound, as an uncapped variance could. The
real spread includes the
sets' sampling noise, so the cap errs on the generous side. It is logged as
``diversity`` (the reward, in [0, 1]) and enters ``total`` with a minus sign; a batch with fewer than two drugs, or
without real spread, contributes 0.

The plate-adversarial term (:mod:`deltatune.train.adversary`) is a classifier's cross-entropy on
each control input's plate, read from the basal embedding behind a gradient reversal: the
classifier learns to read the plate, the encoder to hide it. It is logged as
``plate_adversarial``; with weight 0 there is no classifier at all, so training is bit-identical
to a loss without the option.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ..errors import SettingsError
from ..settings import LossWeights
from .adversary import PlateAdversary


def cell_set_correlation(pred: torch.Tensor, true: torch.Tensor, eps: float) -> torch.Tensor:
    """Pearson r per cell set of (B, S, G) tensors, each set flattened to S*G values."""
    p = pred.reshape(pred.shape[0], -1)
    t = true.reshape(true.shape[0], -1)
    p = p - p.mean(dim=1, keepdim=True)
    t = t - t.mean(dim=1, keepdim=True)
    return (p * t).sum(dim=1) / (torch.sqrt((p * p).sum(dim=1) * (t * t).sum(dim=1)) + eps)


def set_mean_correlation(pred: torch.Tensor, true: torch.Tensor, eps: float) -> torch.Tensor:
    """Pearson r over genes between each set's mean deltas, for (B, S, G) deltas; returns (B,)."""
    return cell_set_correlation(pred.mean(dim=1, keepdim=True), true.mean(dim=1, keepdim=True), eps)


def drug_spread(delta: torch.Tensor, drugs: torch.Tensor) -> torch.Tensor:
    """Variance across drugs of their mean delta, averaged over genes.

    ``delta`` is (B, S, G); ``drugs`` (B,) is each set's drug code. Each drug's mean is over its
    sets (and their cells), so a drug with many sets in the batch counts once.
    """
    codes, inverse = torch.unique(drugs, return_inverse=True)
    if len(codes) < 2:
        return delta.sum() * 0.0
    set_means = delta.mean(dim=1)  # (B, G)
    sums = torch.zeros(len(codes), set_means.shape[1], dtype=set_means.dtype, device=set_means.device)
    sums.index_add_(0, inverse, set_means)
    counts = torch.bincount(inverse, minlength=len(codes)).to(set_means.dtype)
    return (sums / counts[:, None]).var(dim=0, unbiased=False).mean()


def diversity_reward(
    pred_delta: torch.Tensor, true_delta: torch.Tensor, drugs: torch.Tensor, eps: float
) -> torch.Tensor:
    """The predicted spread across drugs as a share of the real one, capped at 1 (no gradient
    beyond); 0 without real spread."""
    real = drug_spread(true_delta, drugs).detach()
    if float(real) <= eps:
        return pred_delta.sum() * 0.0
    return torch.clamp(drug_spread(pred_delta, drugs) / real, max=1.0)


def gene_correlation(pred: torch.Tensor, true: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean over genes of the Pearson r across all cells of (B, S, G) tensors.

    Genes whose predicted or true variance is at most ``eps`` are left out (their r is noise);
    with no gene left the result is 0, which keeps the loss finite and gradient-free.
    """
    p = pred.reshape(-1, pred.shape[-1])
    t = true.reshape(-1, true.shape[-1])
    p = p - p.mean(dim=0, keepdim=True)
    t = t - t.mean(dim=0, keepdim=True)
    p_var, t_var = (p * p).mean(dim=0), (t * t).mean(dim=0)
    r = (p * t).mean(dim=0) / (torch.sqrt(p_var * t_var) + eps)
    valid = (p_var > eps) & (t_var > eps)
    if not bool(valid.any()):
        return r.sum() * 0.0
    return r[valid].mean()


class DeltaAwareLoss(torch.nn.Module):
    """Weighted sum of the model's loss and the delta terms, with every component returned.

    ``base_loss`` is the model's own set loss (for ST, ``model.loss_fn``: energy, sinkhorn or
    MSE); it receives (B, S, G) tensors and may return one value per set. ``adversary`` is the
    plate classifier the ``plate_adversarial`` weight needs (:func:`training_loss` makes it); it
    trains with its own optimizer (:meth:`~deltatune.train.adversary.PlateAdversary.step`).
    """

    def __init__(
        self,
        base_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        weights: LossWeights,
        adversary: PlateAdversary | None = None,
    ):
        super().__init__()
        if weights.plate_adversarial and adversary is None:
            raise SettingsError("loss.plate_adversarial needs a plate classifier (see training_loss)")
        self.base_loss = base_loss
        self.weights = weights
        self.adversary = adversary

    def watching(self, model: torch.nn.Module):
        """A context in which the adversary (if any) sees ``model``'s basal embeddings."""
        return self.adversary.watching(model) if self.adversary is not None else nullcontext()

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        ctrl: torch.Tensor,
        drugs: torch.Tensor | None = None,
        plates: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Components and ``total`` for (B, S, G) predictions, targets and paired controls;
        ``drugs`` (B,) is each set's drug code, needed when the diversity weight is set, and
        ``plates`` (B*S,) each control input's plate code, needed with the adversary."""
        w = self.weights
        pred_delta, true_delta = pred - ctrl, target - ctrl
        if w.pearson_mode == "cell_set":
            corr = cell_set_correlation(pred_delta, true_delta, w.eps).mean()
        elif w.pearson_mode == "set_mean":
            corr = set_mean_correlation(pred_delta, true_delta, w.eps).mean()
        else:
            corr = gene_correlation(pred_delta, true_delta, w.eps)
        parts = {
            "base": torch.nanmean(self.base_loss(pred, target)),
            "delta_mse": F.mse_loss(pred_delta, true_delta),
            "delta_pearson": 1.0 - corr,
        }
        parts["total"] = (
            w.base * parts["base"] + w.delta_mse * parts["delta_mse"] + w.delta_pearson * parts["delta_pearson"]
        )
        if w.diversity:
            if drugs is None:
                raise ValueError("the diversity regularizer needs each set's drug code")
            parts["diversity"] = diversity_reward(pred_delta, true_delta, drugs, w.eps)
            parts["total"] = parts["total"] - w.diversity * parts["diversity"]
        if self.adversary is not None:
            if plates is None:
                raise ValueError("the plate adversary needs each control input's plate code")
            parts["plate_adversarial"] = self.adversary(plates)
            parts["total"] = parts["total"] + w.plate_adversarial * parts["plate_adversarial"]
        return parts


def training_loss(model: torch.nn.Module, weights: LossWeights, n_plates: int) -> DeltaAwareLoss:
    """The loss ``weights`` describe for an ST ``model``, with a fresh plate classifier over
    ``n_plates`` plates when the plate-adversarial weight is set (none otherwise)."""
    adversary = None
    if weights.plate_adversarial:
        if n_plates < 2:
            raise SettingsError(
                "loss.plate_adversarial needs the plate of each control input, from at least two plates: "
                "set data.columns.batch, and with control_input: mean pair by a strategy that groups by batch"
            )
        adversary = PlateAdversary(model.hidden_dim, n_plates)
    return DeltaAwareLoss(model.loss_fn, weights, adversary)
