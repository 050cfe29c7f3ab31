"""Settings of the model: the ST architecture to pretrain, loading a checkpoint, perturbation
matching and LoRA adapters."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SettingsError
from .base import Settings, choice

ST_LOSSES = ("energy", "sinkhorn", "mse", "se")
UNSEEN_POLICIES = ("error", "train")
# LoRA target groups and the Linear layer names each selects (a regular expression per group).
LORA_TARGET_GROUPS = {
    "backbone_attention": r"transformer_backbone\.layers\.\d+\.self_attn\.[qkvo]_proj",
    "backbone_mlp": r"transformer_backbone\.layers\.\d+\.mlp\.(gate|up|down)_proj",
    # ST builds the encoders as Sequential MLPs or a single Linear, by its n_encoder_layers;
    # ``.seen`` is the base layer of a first layer widened for unseen perturbations.
    "pert_encoder": r"pert_encoder(\.\d+)?(\.seen)?",
    "basal_encoder": r"basal_encoder(\.\d+)?",
}


@dataclass(frozen=True)
class Architecture(Settings):
    """Size of a State Transition model built from scratch, the embedded default's base
    (config ``base_model.architecture``)."""

    hidden_dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 2
    cell_set_len: int = 16
    loss: str = choice("energy", ST_LOSSES)
    blur: float = 0.05
    dropout: float = 0.1

    def check(self) -> None:
        super().check()
        if self.hidden_dim % self.n_heads:
            raise SettingsError(f"hidden_dim ({self.hidden_dim}) must be a multiple of n_heads ({self.n_heads})")


@dataclass(frozen=True)
class CheckpointSettings(Settings):
    """Which checkpoint of a run directory to load, and how far to trust it (config ``base_model``)."""

    checkpoint_file: str | None = None
    genes: str | None = None
    trusted: bool = False

    def check(self) -> None:
        super().check()
        if self.checkpoint_file is not None and "/" in self.checkpoint_file:
            raise SettingsError(f"checkpoint_file '{self.checkpoint_file}' must be a file name inside checkpoints/")


@dataclass(frozen=True)
class PerturbationSettings(Settings):
    """How data labels that the base model never saw are handled: config
    ``base_model.unseen_perturbations`` and ``data.combination_separator``
    (:func:`deltatune.settings.workflow.perturbation_settings`)."""

    unseen_perturbations: str = choice("error", UNSEEN_POLICIES)
    combination_separator: str | None = None

    def check(self) -> None:
        super().check()
        if self.combination_separator == "":
            raise SettingsError("combination_separator must be a non-empty string or null (data.combination_separator)")


@dataclass(frozen=True)
class LoraSettings(Settings):
    """Where adapters go and how big they are (a stage's ``lora``).

    ``rank_scale`` maps a target group to a factor applied to both its rank and its alpha.
    """

    targets: tuple[str, ...] = choice(("backbone_attention",), tuple(LORA_TARGET_GROUPS))
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    rank_scale: dict[str, float] = field(default_factory=dict)

    def check(self) -> None:
        super().check()
        unknown = sorted(set(self.rank_scale) - set(LORA_TARGET_GROUPS))
        if unknown:
            raise SettingsError(f"rank_scale: unknown target group(s) {unknown}; known: {sorted(LORA_TARGET_GROUPS)}")
        if not self.targets or self.rank < 1:
            raise SettingsError("targets, rank: needs at least one target group and rank >= 1")
