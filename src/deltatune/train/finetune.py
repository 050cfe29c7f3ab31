"""One fine-tuning stage: LoRA adapters on the base model, trained on the target line's train split.

A stage is data, not code: its pairing strategy, control input, loss weights, LoRA targets and
extras all come from :class:`~deltatune.settings.StageSettings`, so the ablation's stages differ
only in settings. ``adaptation: full`` trains every weight of the base model instead of adapters:
the reference for what adaptation can reach on the data. A trained stage replicate is a folder:
``adapter/`` (peft's ``save_pretrained``) or, fully fine-tuned, ``weights.pt`` (the whole state
dict); ``history.tsv`` (every loss component per step) and ``summary.json`` (effective settings,
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
from safetensors import SafetensorError

from ..data.splits import cells_of_split
from ..errors import CheckpointError, InputDataError
from ..files import atomic_path, write_json
from ..model.lora import apply_lora, count_parameters, load_adapter
from ..model.perturbations import new_rows_module
from ..model.st import BaseModel
from ..pairing.index import PairingIndex
from ..settings import Columns, PerturbationSettings, StageSettings, to_dict
from .batches import CellSetBatches
from .doses import with_interpolated_doses
from .loop import Trainer, check_index
from .losses import DeltaAwareLoss

ADAPTER = "adapter"  # the peft adapter inside a stage folder
FULL_WEIGHTS = "weights.pt"  # a fully fine-tuned model's state dict inside a stage folder


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
    trainer: Trainer,
    index: PairingIndex,
    perturbations: PerturbationSettings = PerturbationSettings(),
) -> StageResult:
    """Train a stage's adapters on the train split of ``target``.

    peft wraps ``base.model`` in place: its base weights stay bit-identical, and
    ``model.unload()`` gives the plain base model back. With ``adaptation: full`` every weight of
    ``base.model`` trains, in place. Perturbations the base never saw train their new input rows
    alongside the adapters when ``perturbations`` allows it.
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
    index = index.restrict(train_rows)
    interpolated = 0
    if settings.dose_interpolation.points:
        target, codes, table, like = with_interpolated_doses(
            target, train_rows, columns, codes, table, settings.dose_interpolation.points, settings.seed)
        index, interpolated = index.with_cells_like(like, target.obs_names), len(like)
    data = CellSetBatches(target, columns, codes, table, index, control_input=settings.control_input,
                          set_size=base.cell_set_len)
    torch.manual_seed(settings.seed)  # adapter initialization
    if settings.adaptation == "full":
        model = base.model.requires_grad_(True)
    else:
        model = apply_lora(base.model, settings.lora, trainable=new_rows_module(base.model))
    parameters = {**count_parameters(model), "new_perturbation_rows": len(vocabulary.added),
                  "interpolated_cells": interpolated}
    loss = DeltaAwareLoss(base.model.loss_fn, settings.loss)
    started = time.perf_counter()
    history = trainer.fit(model, data, loss, desc="finetune")
    return StageResult(model, history, parameters, data.index.summary(), time.perf_counter() - started)


def save_stage(result: StageResult, stage: str, trainer: Trainer, out_dir: str | Path) -> None:
    """Write a stage replicate's folder atomically: it appears complete or not at all."""
    with atomic_path(out_dir, directory=True) as tmp:
        if isinstance(result.model, PeftModel):
            result.model.save_pretrained(tmp / ADAPTER)
        else:
            torch.save(result.model.state_dict(), tmp / FULL_WEIGHTS)
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


def load_stage(model: torch.nn.Module, stage_dir: str | Path) -> torch.nn.Module:
    """``model`` (the base, widened for the screen's labels) with a stage replicate's training
    applied: its adapter attached, or its full weights loaded in place.

    A stage trained on another base model (other sizes) or an unreadable stage file is a
    :class:`CheckpointError` naming the folder.
    """
    weights = Path(stage_dir) / FULL_WEIGHTS
    try:
        if weights.exists():
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return model
        return load_adapter(model, str(Path(stage_dir) / ADAPTER))
    except RuntimeError as err:
        if "size mismatch" not in str(err) and "Missing key" not in str(err) and "Unexpected key" not in str(err):
            raise
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err).splitlines()[0])
        raise CheckpointError(f"the stage in {stage_dir} does not fit the base model: it was trained on another "
                              f"one ({detail})") from None
    except (OSError, EOFError, ValueError, SafetensorError) as err:
        raise CheckpointError(f"cannot read the stage in {stage_dir} ({err}): it may be truncated; train it again "
                              "(delete the folder and rerun)") from None
