"""A plate-adversarial head on the basal (control) embedding, trained through gradient reversal.

Batch pairing teaches a model to carry a control's plate offset from its input to its output. The
adversary is the domain-adversarial fix (Ganin & Lempitsky 2015): a small classifier reads the
plate of each control input from the basal encoder's output, and the gradient that reaches the
encoder is reversed, so that the classifier's success becomes the encoder's loss and the
embedding learns to hide the plate.

Checked against scGPT's released code (bowang-lab/scGPT at cebd6fa, the design's seed 003 names
its ``loss_dab``): ``AdversarialDiscriminator`` in ``scgpt/model/model.py`` (two blocks of
Linear(d, d), LeakyReLU, LayerNorm, then Linear(d, n_batches), behind ``grad_reverse`` with
``lambd=1.0``), ``scgpt/model/grad_reverse.py`` (identity forward, negated gradient backward) and
``examples/finetune_integration.py`` (``loss + dab_weight * CrossEntropyLoss(dab_output,
batch_labels)``, trained by the same optimizer as the model). The head here is that classifier
with that loss and weight; it reads ST's ``basal_encoder`` output instead of scGPT's cell
embedding, and rows without a plate label (code -1) are left out of the cross-entropy.

Two things differ from scGPT, on purpose. The classifier has its own optimizer, at a multiple
of the model's learning rate (``loss.plate_adversary_lr_scale``): started from scratch against a
pretrained encoder at the model's rate, it never learned to read the plate within a stage. And
its gradients stay out of the model's gradient clipping, so that the classifier's steps never
shrink the model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from state.tx.models.state_transition import StateTransitionPerturbationModel

NO_PLATE = -1  # the label of a control input whose plate is unknown (an overall control mean)


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient's sign flipped backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.neg()


class PlateAdversary(torch.nn.Module):
    """Predicts each control input's plate from its basal embedding, behind a gradient reversal.

    Use :meth:`watching` around the model's forward passes: it records the embedding the model's
    basal encoder produced, and calling the adversary with the plate codes returns the
    cross-entropy on it.
    """

    def __init__(self, hidden_dim: int, n_plates: int):
        super().__init__()
        blocks = [
            layer
            for _ in range(2)
            for layer in (
                torch.nn.Linear(hidden_dim, hidden_dim),
                torch.nn.LeakyReLU(),
                torch.nn.LayerNorm(hidden_dim),
            )
        ]
        self.classifier = torch.nn.Sequential(*blocks, torch.nn.Linear(hidden_dim, n_plates))
        self._embedding: torch.Tensor | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._scheduler: torch.optim.lr_scheduler.LambdaLR | None = None

    def start_training(
        self, device: torch.device, lr: float, weight_decay: float, schedule: Callable[[int], float]
    ) -> None:
        """Move to ``device`` and make the classifier's own optimizer (AdamW) and learning-rate
        ``schedule`` (a factor per step, as the model's)."""
        self.to(device)
        self._optimizer = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        self._scheduler = torch.optim.lr_scheduler.LambdaLR(self._optimizer, schedule)
        self._optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One step of the classifier on the gradients of the last backward pass."""
        self._optimizer.step()
        self._scheduler.step()
        self._optimizer.zero_grad(set_to_none=True)

    def training_state(self) -> dict:
        """The classifier's weights, optimizer and schedule, for a resumable checkpoint."""
        return {
            "weights": self.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "scheduler": self._scheduler.state_dict(),
        }

    def load_training_state(self, state: dict) -> None:
        """Resume from :meth:`training_state` (after :meth:`start_training`)."""
        self.load_state_dict(state["weights"])
        self._optimizer.load_state_dict(state["optimizer"])
        self._scheduler.load_state_dict(state["scheduler"])

    @contextmanager
    def watching(self, model: torch.nn.Module) -> Iterator[None]:
        """Record the basal encoder's output of the ST model inside ``model`` (peft-wrapped or
        not) while the context is open."""
        st = next(m for m in model.modules() if isinstance(m, StateTransitionPerturbationModel))

        def record(module, inputs, output) -> None:
            self._embedding = output

        handle = st.basal_encoder.register_forward_hook(record)
        try:
            yield
        finally:
            handle.remove()
            self._embedding = None

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """Plate logits for (..., hidden) embeddings, with the gradient to them reversed; in float32
        (under mixed precision the embedding the hook recorded is half precision)."""
        return self.classifier(_ReverseGradient.apply(embedding).float())

    def forward(self, plates: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the plate read from the last recorded embedding; ``plates`` holds one
        code per control input row, in the order the model received them."""
        if self._embedding is None:
            raise RuntimeError("the plate adversary saw no basal embedding: call the model inside watching()")
        embedding = self._embedding.reshape(-1, self._embedding.shape[-1])
        known = plates != NO_PLATE
        if not bool(known.any()):
            return embedding.sum() * 0.0
        return F.cross_entropy(self.logits(embedding[known]), plates[known])
