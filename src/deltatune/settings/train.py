"""Settings of training: the loss, the loop (pretraining and every stage) and a stage's adapters."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SettingsError
from .base import Settings, choice
from .model import LoraSettings
from .pairing import STRATEGIES

PEARSON_MODES = ("cell_set", "gene", "set_mean")
CONTROL_INPUTS = ("cells", "mean")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
ADAPTATIONS = ("lora", "full")  # adapters on a frozen base, or every weight of the base trained


@dataclass(frozen=True)
class LossWeights(Settings):
    """Weights of the loss components; the model's own loss alone by default
    (:class:`deltatune.train.losses.DeltaAwareLoss`)."""

    base: float = 1.0
    delta_mse: float = 0.0
    delta_pearson: float = 0.0
    pearson_mode: str = choice("cell_set", PEARSON_MODES)
    diversity: float = 0.0
    eps: float = 1e-8

    def check(self) -> None:
        super().check()
        if min(self.base, self.delta_mse, self.delta_pearson, self.diversity) < 0:
            raise SettingsError("base, delta_mse, delta_pearson, diversity: loss weights must be non-negative")
        if self.base + self.delta_mse + self.delta_pearson == 0:
            raise SettingsError("base, delta_mse, delta_pearson: at least one loss weight must be positive")


@dataclass(frozen=True)
class TrainSettings(Settings):
    """How to train: data pairing, loss, optimizer and schedule (config ``base_model.pretrain``).

    ``batch_size`` counts cells per optimizer step and is rounded down to whole cell sets
    (at least one set).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    pairing: str = choice("random", STRATEGIES)
    control_input: str = choice("cells", CONTROL_INPUTS)
    loss: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    precision: str = choice("32-true", PRECISIONS)
    checkpoint_every: int = 100

    def check(self) -> None:
        super().check()
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.checkpoint_every < 1:
            raise SettingsError("epochs, batch_size, checkpoint_every and lr must be positive")
        if not 0 <= self.warmup_fraction < 1:
            raise SettingsError("warmup_fraction must be in [0, 1)")


@dataclass(frozen=True)
class DoseInterpolation(Settings):
    """Extra training targets between measured doses (a stage's ``dose_interpolation``).

    ``points`` intermediate doses between each pair of neighbouring measured doses of a drug on
    a plate, equally spaced in log dose; 0 adds none (:mod:`deltatune.train.doses`).
    """

    points: int = 0

    def check(self) -> None:
        super().check()
        if self.points < 0:
            raise SettingsError("points must be 0 (off) or a positive number of doses between measured ones")


@dataclass(frozen=True)
class StageSettings(TrainSettings):
    """Training settings plus what is adapted (config ``stages.<name>``): LoRA adapters where
    ``lora`` says, or, with ``adaptation: full``, every weight of the base model (``lora`` unused)."""

    adaptation: str = choice("lora", ADAPTATIONS)
    lora: LoraSettings = field(default_factory=LoraSettings)
    dose_interpolation: DoseInterpolation = field(default_factory=DoseInterpolation)
