"""Settings of training: the loss, the loop (pretraining and every stage) and a stage's adapters."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingsError
from .base import Settings, setting
from .model import LoraSettings
from .pairing import STRATEGIES

PEARSON_MODES = ("cell_set", "gene", "set_mean")
CONTROL_INPUTS = ("cells", "mean")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
ADAPTATIONS = ("lora", "full")  # adapters on a frozen base, or weights of the base trained whole
# What `adaptation: full` may train whole, by the prefix of a parameter's name in ST's module
FULL_GROUPS = {
    "pert_encoder": "pert_encoder.",
    "basal_encoder": "basal_encoder.",
    "backbone": "transformer_backbone.",
    "decoder": "project_out.",
}


@dataclass(frozen=True)
class LossWeights(Settings):
    """Weights of the loss components; the model's own loss alone by default
    (:class:`deltatune.train.losses.DeltaAwareLoss`).

    ``plate_adversary_lr_scale`` is the plate classifier's learning rate as a multiple of the
    model's. The classifier starts from scratch against a pretrained encoder: at the model's rate
    it did not learn to read the plate within a stage (its cross-entropy stayed at chance while a
    logistic probe read the plate from the same embeddings), so the reversal had nothing to push
    against.
    """

    base: float = setting(1.0, minimum=0)
    delta_mse: float = setting(0.0, minimum=0)
    delta_pearson: float = setting(0.0, minimum=0)
    pearson_mode: str = setting("cell_set", choices=PEARSON_MODES)
    diversity: float = setting(0.0, minimum=0)
    plate_adversarial: float = setting(0.0, minimum=0)
    plate_adversary_lr_scale: float = setting(10.0, exclusiveMinimum=0)
    eps: float = setting(1e-8, exclusiveMinimum=0)

    def check(self) -> None:
        super().check()
        if self.base + self.delta_mse + self.delta_pearson == 0:
            raise SettingsError("base, delta_mse, delta_pearson: at least one loss weight must be positive")


@dataclass(frozen=True)
class TrainSettings(Settings):
    """How to train: data pairing, loss, optimizer and schedule (config ``base_model.pretrain``).

    ``batch_size`` counts cells per optimizer step and is rounded down to whole cell sets
    (at least one set). ``checkpoint_every`` (steps between the checkpoints a killed run resumes
    from) is run-only: it never changes the weights trained, so changing it retrains nothing.
    """

    epochs: int = setting(10, minimum=1)
    batch_size: int = setting(128, minimum=1)
    lr: float = setting(3e-4, exclusiveMinimum=0)
    weight_decay: float = setting(0.0, minimum=0)
    warmup_fraction: float = setting(0.05, minimum=0, exclusiveMaximum=1)
    grad_clip: float = setting(1.0, exclusiveMinimum=0)
    pairing: str = setting("random", choices=STRATEGIES)
    control_input: str = setting("cells", choices=CONTROL_INPUTS)
    loss: LossWeights = setting(default_factory=LossWeights)
    seed: int = 0
    precision: str = setting("32-true", choices=PRECISIONS)
    checkpoint_every: int = setting(100, minimum=1, run_only=True)

    def check(self) -> None:
        super().check()
        if self.loss.plate_adversarial and self.precision == "16-mixed":
            raise SettingsError(
                "loss.plate_adversarial trains its classifier outside the loss scaling of precision 16-mixed: "
                "use bf16-mixed or 32-true"
            )


@dataclass(frozen=True)
class DoseInterpolation(Settings):
    """Extra training targets between measured doses (a stage's ``dose_interpolation``).

    ``points`` intermediate doses between each pair of neighbouring measured doses of a drug on
    a plate, equally spaced in log dose; 0 adds none (:mod:`deltatune.train.doses`).
    """

    points: int = setting(0, minimum=0)


@dataclass(frozen=True)
class StageSettings(TrainSettings):
    """Training settings plus what is adapted (config ``stages.<name>``): LoRA adapters where
    ``lora`` says, or, with ``adaptation: full``, the weights of the base model themselves
    (``lora`` unused): of the module groups in ``full_groups`` only, the rest frozen, or every
    weight when it is empty. Which part of the model must move for a new cell line is then a
    setting, not a code path."""

    adaptation: str = setting("lora", choices=ADAPTATIONS)
    full_groups: tuple[str, ...] = setting((), choices=tuple(FULL_GROUPS))
    lora: LoraSettings = setting(default_factory=LoraSettings)
    dose_interpolation: DoseInterpolation = setting(default_factory=DoseInterpolation)

    def check(self) -> None:
        super().check()
        if self.full_groups and self.adaptation != "full":
            raise SettingsError("full_groups trains module groups whole: it needs adaptation: full")
