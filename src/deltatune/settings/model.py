"""Settings of the model: the ST architecture to pretrain, loading a checkpoint, perturbation
matching and LoRA adapters."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingsError
from .base import Settings, setting

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
    "decoder": r"project_out(\.\d+)?",  # ST's decoder: from the hidden size back to the genes
}


@dataclass(frozen=True)
class Architecture(Settings):
    """Size of a State Transition model built from scratch, the embedded default's base
    (config ``base_model.architecture``). arc-state's Tahoe model (``model/tahoe_best.yaml``) is
    hidden 1440, 4 layers, 12 heads, intermediate 4416, 4 encoder and decoder layers, sets of 512."""

    hidden_dim: int = setting(64, minimum=1)
    n_layers: int = setting(2, minimum=1)
    n_heads: int = setting(4, minimum=1)
    mlp_ratio: int = setting(2, minimum=1)
    intermediate_dim: int | None = setting(None, minimum=1)  # the backbone MLP's width; None: mlp_ratio x hidden
    encoder_layers: int = setting(2, minimum=1)  # of the perturbation and basal encoders (ST's n_encoder_layers)
    decoder_layers: int = setting(2, minimum=1)  # of the output projection (ST's n_decoder_layers)
    cell_set_len: int = setting(16, minimum=1)
    loss: str = setting("energy", choices=ST_LOSSES)
    blur: float = setting(0.05, exclusiveMinimum=0)
    dropout: float = setting(0.1, minimum=0, maximum=1)

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
    (:class:`deltatune.settings.workflow.WorkflowSettings` puts them together)."""

    unseen_perturbations: str = setting("error", choices=UNSEEN_POLICIES)
    combination_separator: str | None = None

    def check(self) -> None:
        super().check()
        if self.combination_separator == "":
            raise SettingsError("combination_separator must be a non-empty string or null (data.combination_separator)")


@dataclass(frozen=True)
class LoraSettings(Settings):
    """Where adapters go and how big they are (a stage's ``lora``).

    ``rank_scale`` maps a target group to a factor applied to both its rank and its alpha.
    ``use_dora`` makes them peft's DoRA adapters (weight-decomposed: a trained magnitude per
    output and a LoRA update of the direction), which some report closer to full fine-tuning at
    the same rank.
    """

    targets: tuple[str, ...] = setting(("backbone_attention",), choices=tuple(LORA_TARGET_GROUPS), minItems=1)
    rank: int = setting(8, minimum=1)
    alpha: float = setting(16.0, exclusiveMinimum=0)
    dropout: float = setting(0.0, minimum=0, maximum=1)
    rank_scale: dict[str, float] = setting(default_factory=dict, choices=tuple(LORA_TARGET_GROUPS), exclusiveMinimum=0)
    use_dora: bool = False
