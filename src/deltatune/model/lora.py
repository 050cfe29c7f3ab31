"""What fine-tuning moves in a State Transition model: LoRA adapters through peft, or weights whole.

ST's own ``lora`` option wraps only the backbone and leaves encoders and ``project_out`` fully
trainable, which is not a frozen-base adapter. Here peft wraps the whole module: every base weight
is frozen, and adapters go on the Linear layers of the named target groups, each group with its
own rank and alpha when ``rank_scale`` says so (the design's basal encoder at half rank).
"""

from __future__ import annotations

import re

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from ..errors import SettingsError
from ..settings import LoraSettings
from ..settings.model import LORA_TARGET_GROUPS
from ..settings.train import FULL_GROUPS


def target_modules(model: torch.nn.Module, settings: LoraSettings) -> dict[str, list[str]]:
    """Names of the Linear layers of each target group; a group that matches nothing is an error."""
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    found = {g: [n for n in linear if re.fullmatch(LORA_TARGET_GROUPS[g], n)] for g in settings.targets}
    empty = [g for g, names in found.items() if not names]
    if empty:
        raise SettingsError(f"lora: target group(s) {empty} match no Linear layer of this model")
    return found


def apply_lora(model: torch.nn.Module, settings: LoraSettings, trainable: str | None = None) -> PeftModel:
    """Wrap ``model`` with fresh LoRA adapters; all base weights are frozen and left untouched.

    ``trainable`` names one module trained and saved whole beside the adapters (peft's
    ``modules_to_save``): the new perturbation rows of a widened first layer.
    """
    groups = target_modules(model, settings)
    rank_pattern, alpha_pattern = {}, {}
    for group, scale in settings.rank_scale.items():
        for name in groups.get(group, []):
            rank_pattern[name] = max(1, int(settings.rank * scale))
            alpha_pattern[name] = settings.alpha * scale
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=[n for names in groups.values() for n in names],
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        bias="none",
        use_dora=settings.use_dora,
        modules_to_save=[trainable] if trainable else None,
    )
    return get_peft_model(model, config)


def train_whole(model: torch.nn.Module, groups: tuple[str, ...], also: str | None = None) -> torch.nn.Module:
    """``model`` with the weights of the module ``groups`` (:data:`FULL_GROUPS`) trainable and
    every other weight frozen; with no group, every weight. ``also`` names one more module trained
    whole (the new perturbation rows of a widened first layer). A group that matches nothing is an
    error, as for LoRA targets."""
    if not groups:
        return model.requires_grad_(True)
    named = dict(model.named_parameters())
    empty = [g for g in groups if not any(name.startswith(FULL_GROUPS[g]) for name in named)]
    if empty:
        raise SettingsError(f"full_groups {empty} match no weight of this model")
    prefixes = tuple(FULL_GROUPS[g] for g in groups) + ((f"{also}.",) if also else ())
    model.requires_grad_(False)
    for name, parameter in named.items():
        parameter.requires_grad_(name.startswith(prefixes))
    return model


def load_adapter(model: torch.nn.Module, adapter_dir: str) -> PeftModel:
    """Attach a saved adapter (``save_pretrained`` output) to ``model`` for inference."""
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Total and trainable parameter counts (the dead token table is already size 1)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": int(total), "trainable": int(trainable)}
