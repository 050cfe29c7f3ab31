"""Pretraining a small ST base model on the cell lines other than the fine-tuning one.

This stands in for a released ST checkpoint when none is given: the embedded default needs a
base model that knows every drug from other lines but has never seen the held-out line.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..errors import InputDataError
from ..model.st import BaseModel, build_st_model
from ..pairing.index import PairingIndex
from ..settings import Architecture, Columns, TrainSettings
from .batches import CellSetBatches
from .loop import Trainer, check_index
from .losses import training_loss


def pretrain_base(
    adata: ad.AnnData,
    columns: Columns,
    arch: Architecture,
    settings: TrainSettings,
    trainer: Trainer,
    index: PairingIndex,
) -> tuple[BaseModel, pd.DataFrame]:
    """Train every weight of a fresh ST model on ``adata`` with ``settings``; return it with its history.

    ``index`` pairs the perturbed cells of ``adata`` with controls. The vocabulary is every
    perturbation label of ``adata``, control included (as in ST's ``pert_onehot_map``).
    """
    if adata.n_obs == 0:
        raise InputDataError("no cells of other cell lines to pretrain a base model on")
    check_index(index, settings)
    labels = adata.obs[columns.perturbation].astype(str).to_numpy()
    vocab = sorted(np.unique(labels))
    torch.manual_seed(settings.seed)  # weight initialization
    model = build_st_model(arch, list(map(str, adata.var_names)), vocab, columns.control)
    base = BaseModel(model=model, genes=list(map(str, adata.var_names)), perturbations=vocab)
    codes, table = base.vocabulary(labels, columns.control).encode(labels)
    data = CellSetBatches(
        adata,
        columns,
        codes,
        table,
        index,
        control_input=settings.control_input,
        set_size=arch.cell_set_len,
    )
    history = trainer.fit(model, data, training_loss(model, settings.loss, data.n_plates), settings, desc="pretrain")
    return base, history
