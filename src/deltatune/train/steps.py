"""The training step's entry points, files in and files out: what the ``pretrain`` and
``finetune`` rules run. torch and arc-state are imported when a function is called, not before:
``from deltatune import finetune_files`` stays light."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..origin import made_by
from ..settings import (
    Architecture,
    CheckpointSettings,
    Columns,
    PerturbationSettings,
    StageSettings,
    TrainSettings,
    output_dict,
    to_dict,
)


def pretrain_files(
    data: str | Path,
    pairing: str | Path,
    out: str | Path,
    *,
    columns: Columns,
    architecture: Architecture = Architecture(),
    settings: TrainSettings = TrainSettings(),
    work_dir: str | Path,
    accelerator: str = "auto",
) -> None:
    """Pretrain a small ST base model on ``data`` (the base lines) and write it as an ST run
    directory to ``out``; ``work_dir`` holds the checkpoints a killed run resumes from."""
    from ..data.readers import read_h5ad
    from ..model.checkpoint import save_base_model
    from ..pairing.index import PairingIndex
    from .loop import Trainer, fingerprint
    from .pretrain import pretrain_base

    effective = {"architecture": to_dict(architecture), "training": output_dict(settings)}
    trainer = Trainer(work_dir, fingerprint(effective, [data, pairing]), accelerator)
    base, history = pretrain_base(read_h5ad(data), columns, architecture, settings, trainer, PairingIndex.load(pairing))
    import torch

    made = made_by(device=str(trainer.fabric.device), device_name=trainer.device_name, cuda=torch.version.cuda)
    save_base_model(base, out, {"deltatune": effective, "made_by": made}, history)
    shutil.rmtree(work_dir, ignore_errors=True)  # the checkpoint only served resuming


def finetune_files(
    data: str | Path,
    split: str | Path,
    base: str | Path,
    pairing: str | Path,
    out: str | Path,
    *,
    stage: str,
    columns: Columns,
    settings: StageSettings = StageSettings(),
    checkpoint: CheckpointSettings = CheckpointSettings(),
    perturbations: PerturbationSettings = PerturbationSettings(),
    work_dir: str | Path,
    accelerator: str = "auto",
) -> dict:
    """Train one stage replicate on the train split of ``data`` (the preprocessed target line)
    from the base model ``base`` and write its folder to ``out`` (:mod:`deltatune.model.stage`);
    return its summary. ``pairing`` is the target line's index for ``settings.pairing``."""
    from ..data.genes import read_for_model
    from ..data.splits import read_split, training_cells
    from ..model.checkpoint import load_base_model
    from ..model.stage import save_stage
    from ..pairing.index import PairingIndex
    from .finetune import finetune_stage, stage_summary
    from .loop import Trainer, fingerprint

    table = read_split(split)
    model = load_base_model(base, checkpoint)
    target = read_for_model(data, model.genes, lambda obs: training_cells(obs, columns, table), base)
    trainer = Trainer(work_dir, fingerprint(output_dict(settings), [data, split, base, pairing]), accelerator)
    result = finetune_stage(model, target, table, columns, settings, trainer, PairingIndex.load(pairing), perturbations)
    summary = stage_summary(result, stage, settings, trainer)
    save_stage(out, result.model, result.history, summary)
    shutil.rmtree(work_dir, ignore_errors=True)  # the checkpoint only served resuming
    return summary
