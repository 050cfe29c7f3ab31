"""One fine-tuning stage: LoRA adapters on the base model, trained on the target line's train split.

A stage is data, not code: its pairing strategy, control input, loss weights, LoRA targets and
extras all come from :class:`~deltatune.settings.StageSettings`, so the ablation's stages differ
only in settings. ``adaptation: full`` trains every weight of the base model instead of adapters:
the reference for what adaptation can reach on the data. A trained stage replicate is written
as a folder by :func:`deltatune.model.stage.save_stage`, with :func:`stage_summary` as its record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..data.splits import cells_of_split
from ..errors import InputDataError
from ..model.lora import apply_lora, count_parameters, train_whole
from ..model.perturbations import new_rows_module
from ..model.st import BaseModel
from ..origin import made_by
from ..pairing.index import PairingIndex
from ..settings import Columns, PerturbationSettings, StageSettings, output_dict
from .batches import CellSetBatches
from .doses import with_interpolated_doses
from .loop import Trainer, check_index
from .losses import training_loss


@dataclass
class StageResult:
    """A trained stage replicate: the adapted model, its history and what the report shows of it.

    ``model`` is a peft model, or the base model itself when fully fine-tuned. ``parameters``
    counts total, trainable and new perturbation-row parameters (and interpolated cells);
    ``pairing`` is the pairing index's summary over the train split.
    """

    model: torch.nn.Module
    history: pd.DataFrame
    parameters: dict[str, int]
    pairing: dict
    seconds: float


def finetune_stage(
    base: BaseModel,
    target: ad.AnnData,
    split: pd.DataFrame,
    columns: Columns,
    settings: StageSettings,
    trainer: Trainer,
    index: PairingIndex,
    perturbations: PerturbationSettings = PerturbationSettings(),
) -> StageResult:
    """Train a stage's adapters with ``settings`` on the train split of ``target``.

    peft wraps ``base.model`` in place: its base weights stay bit-identical, and
    ``model.unload()`` gives the plain base model back. With ``adaptation: full`` every weight of
    ``base.model`` trains, in place. Perturbations the base never saw train their new input rows
    alongside the adapters when ``perturbations`` allows it.
    """
    check_index(index, settings)
    train_rows = np.flatnonzero(cells_of_split(target.obs, columns, split, "train"))
    if len(train_rows) == 0:
        raise InputDataError("the split file assigns no perturbation of the target line to 'train'")
    labels = target.obs[columns.perturbation].astype(str).to_numpy()
    vocabulary = base.screen_vocabulary(target.obs, columns, perturbations)
    codes = np.full(len(labels), -1, dtype=np.int64)
    codes[train_rows], table = vocabulary.encode(labels[train_rows])
    index = index.restrict(train_rows)
    interpolated = 0
    if settings.dose_interpolation.points:
        target, codes, table, like = with_interpolated_doses(
            target, train_rows, columns, codes, table, settings.dose_interpolation.points, settings.seed
        )
        index, interpolated = index.with_cells_like(like, target.obs_names), len(like)
    data = CellSetBatches(
        target, columns, codes, table, index, control_input=settings.control_input, set_size=base.cell_set_len
    )
    torch.manual_seed(settings.seed)  # adapter initialization
    if settings.adaptation == "full":
        model = train_whole(base.model, settings.full_groups, also=new_rows_module(base.model))
    else:
        model = apply_lora(base.model, settings.lora, trainable=new_rows_module(base.model))
    parameters = {
        **count_parameters(model),
        "new_perturbation_rows": len(vocabulary.added),
        "interpolated_cells": interpolated,
    }
    loss = training_loss(base.model, settings.loss, data.n_plates)
    started = time.perf_counter()
    history = trainer.fit(model, data, loss, settings, desc="finetune")
    return StageResult(model, history, parameters, data.index.summary(), time.perf_counter() - started)


def stage_summary(result: StageResult, stage: str, settings: StageSettings, trainer: Trainer) -> dict:
    """What a stage replicate's ``summary.json`` records: its effective settings (the run-only ones
    left out of them), parameter and pairing counts, steps, time, and the device and CPU threads it
    trained with (run-only, but they can change the last bits of the weights), and the code,
    packages and machine that made it (:func:`deltatune.origin.made_by`)."""
    return {
        "stage": stage,
        "settings": output_dict(settings),
        "parameters": result.parameters,
        "pairing": result.pairing,
        "steps": len(result.history),
        "train_seconds": round(result.seconds, 2),
        "device": str(trainer.fabric.device),
        "device_name": trainer.device_name,
        "threads": torch.get_num_threads(),
        "final_loss": result.history.iloc[-1].drop(["epoch", "step"]).to_dict(),
        "made_by": made_by(cuda=torch.version.cuda),
    }
