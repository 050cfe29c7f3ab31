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
from .lora import LoraSettings, apply_lora, count_parameters
from .losses import DeltaAwareLoss
from .model import BaseModel
from .pairing import PairingIndex, control_mask
from .perturbations import PerturbationSettings, new_rows_module
from .splits import cells_of_split
from .training import Trainer, TrainSettings, check_index


@dataclass(frozen=True)
class StageSettings(TrainSettings):
    """Training settings plus where the LoRA adapters go."""

    lora: LoraSettings = field(default_factory=LoraSettings)


def finetune_stage(
    base: BaseModel,
    target: ad.AnnData,
    split: pd.DataFrame,
    columns: Columns,
    trainer: Trainer,
    index: PairingIndex,
    perturbations: PerturbationSettings = PerturbationSettings(),
) -> tuple[PeftModel, pd.DataFrame, dict]:
    """Train a stage's adapters; return the adapted model, its history and parameter counts.

    peft wraps ``base.model`` in place: its base weights stay bit-identical, and
    ``model.unload()`` gives the plain base model back. Perturbations the base never saw train
    their new input rows alongside the adapters when ``perturbations`` allows it.
    """
    settings: StageSettings = trainer.settings
    check_index(index, settings)
    train_rows = np.flatnonzero(cells_of_split(target.obs, columns, split, "train"))
    if len(train_rows) == 0:
        raise InputDataError("the split file assigns no perturbation of the target line to 'train'")
    labels = target.obs[columns.perturbation].astype(str).to_numpy()
    vocabulary = base.vocabulary(labels[~control_mask(target.obs, columns)], columns.control, perturbations)
    codes = np.full(len(labels), -1, dtype=np.int64)
    codes[train_rows], table = vocabulary.encode(labels[train_rows])
    data = CellSetBatches(
        target, columns, codes, table, index.restrict(train_rows),
        control_input=settings.control_input, set_size=base.cell_set_len,
    )
    torch.manual_seed(settings.seed)  # adapter initialization
    model = apply_lora(base.model, settings.lora, trainable=new_rows_module(base.model))
    counts = count_parameters(model)
    counts["new_perturbation_rows"] = len(vocabulary.added)
    loss = DeltaAwareLoss(base.model.loss_fn, settings.loss)
    history = trainer.fit(model, data, loss, desc="finetune")
    return model, history, {**counts, **data.index.summary()}
