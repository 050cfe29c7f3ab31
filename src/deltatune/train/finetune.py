"""One fine-tuning stage: LoRA adapters on the base model, trained on the target line's train split.

A stage is data, not code: its pairing strategy, control input, loss weights and LoRA targets
all come from :class:`~deltatune.settings.StageSettings`, so the ablation's stages differ only in
settings. A trained stage replicate is a folder: ``adapter/`` (peft's ``save_pretrained``),
``history.tsv`` (every loss component per step) and ``summary.json`` (effective settings,
parameter counts, pairing counts, time and device).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from peft import PeftModel

from ..data.splits import cells_of_split
from ..errors import InputDataError
from ..files import atomic_path, write_json
from ..model.lora import apply_lora, count_parameters
from ..model.perturbations import new_rows_module
from ..model.st import BaseModel
from ..pairing.index import PairingIndex
from ..settings import Columns, PerturbationSettings, StageSettings, to_dict
from .batches import CellSetBatches
from .loop import Trainer, check_index
from .losses import DeltaAwareLoss

ADAPTER = "adapter"  # the peft adapter inside a stage folder


@dataclass
class StageResult:
    """A trained stage replicate: the adapted model, its history and what the report shows of it.

    ``parameters`` counts total, trainable and new perturbation-row parameters; ``pairing`` is
    the pairing index's summary over the train split.
    """

    model: PeftModel
    history: pd.DataFrame
    parameters: dict[str, int]
    pairing: dict
    seconds: float


def finetune_stage(
    base: BaseModel,
    target: ad.AnnData,
    split: pd.DataFrame,
    columns: Columns,
    trainer: Trainer,
    index: PairingIndex,
    perturbations: PerturbationSettings = PerturbationSettings(),
) -> StageResult:
    """Train a stage's adapters on the train split of ``target``.

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
    vocabulary = base.screen_vocabulary(target.obs, columns, perturbations)
    codes = np.full(len(labels), -1, dtype=np.int64)
    codes[train_rows], table = vocabulary.encode(labels[train_rows])
    data = CellSetBatches(
        target, columns, codes, table, index.restrict(train_rows),
        control_input=settings.control_input, set_size=base.cell_set_len,
    )
    torch.manual_seed(settings.seed)  # adapter initialization
    model = apply_lora(base.model, settings.lora, trainable=new_rows_module(base.model))
    parameters = {**count_parameters(model), "new_perturbation_rows": len(vocabulary.added)}
    loss = DeltaAwareLoss(base.model.loss_fn, settings.loss)
    started = time.perf_counter()
    history = trainer.fit(model, data, loss, desc="finetune")
    return StageResult(model, history, parameters, data.index.summary(), time.perf_counter() - started)


def save_stage(result: StageResult, stage: str, trainer: Trainer, out_dir: str | Path) -> None:
    """Write a stage replicate's folder atomically: it appears complete or not at all."""
    with atomic_path(out_dir, directory=True) as tmp:
        result.model.save_pretrained(tmp / ADAPTER)
        result.history.to_csv(tmp / "history.tsv", sep="\t", index=False)
        summary = {
            "stage": stage,
            "settings": to_dict(trainer.settings),
            "parameters": result.parameters,
            "pairing": result.pairing,
            "steps": len(result.history),
            "train_seconds": round(result.seconds, 2),
            "device": str(trainer.fabric.device),
            "device_name": trainer.device_name,
            "final_loss": result.history.iloc[-1].drop(["epoch", "step"]).to_dict(),
        }
        write_json(tmp / "summary.json", summary)
