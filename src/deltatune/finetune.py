"""One fine-tuning stage: LoRA adapters on the base model, trained on the target line's train split.

A stage is data, not code: its pairing strategy, control input, loss weights and LoRA targets
all come from :class:`StageSettings`, so the ablation's stages differ only in settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import torch
from peft import PeftModel

from .batches import CellSetBatches
from .columns import Columns
from .errors import InputDataError
from .losses import DeltaAwareLoss
from .lora import LoraSettings, apply_lora, count_parameters
from .model import BaseModel
from .splits import cells_of_split
from .training import Trainer, TrainSettings


@dataclass(frozen=True)
class StageSettings(TrainSettings):
    """Training settings plus where the LoRA adapters go."""

    lora: LoraSettings = field(default_factory=LoraSettings)


def training_cells(target: ad.AnnData, columns: Columns, split: pd.DataFrame) -> ad.AnnData:
    """The target line's train-split perturbed cells and all its control cells."""
    is_control = (target.obs[columns.perturbation].astype(str) == columns.control).to_numpy()
    is_train = cells_of_split(target.obs, columns, split, "train")
    if not is_train.any():
        raise InputDataError("the split file assigns no perturbation of the target line to 'train'")
    return target[is_control | is_train].copy()


def finetune_stage(
    base: BaseModel,
    target: ad.AnnData,
    split: pd.DataFrame,
    columns: Columns,
    trainer: Trainer,
) -> tuple[PeftModel, pd.DataFrame, dict]:
    """Train a stage's adapters; return the adapted model, its history and parameter counts.

    peft wraps ``base.model`` in place: its base weights stay bit-identical, and
    ``model.unload()`` gives the plain base model back.
    """
    settings: StageSettings = trainer.settings
    cells = training_cells(target, columns, split)
    labels = cells.obs[columns.perturbation].astype(str).to_numpy()
    is_control = labels == columns.control
    codes = np.full(len(labels), -1, dtype=np.int64)
    codes[~is_control] = base.perturbation_codes(labels[~is_control])
    data = CellSetBatches(
        cells, columns, codes, len(base.perturbations),
        pairing=settings.pairing, control_input=settings.control_input, set_size=base.cell_set_len,
    )
    torch.manual_seed(settings.seed)  # adapter initialization
    model = apply_lora(base.model, settings.lora)
    counts = count_parameters(model)
    loss = DeltaAwareLoss(base.model.loss_fn, settings.loss)
    history = trainer.fit(model, data, loss, desc="finetune")
    return model, history, {**counts, **data.index.summary()}
