"""The State Transition model: building one, and the base model with its genes and perturbations.

Reading and writing ST run directories is :mod:`deltatune.model.checkpoint`; matching a screen's
genes and perturbation labels to a base model by name is :mod:`deltatune.data.genes` and
:mod:`deltatune.model.perturbations`.

Backbone choices follow what works with arc-state 0.11 under transformers 5: a bidirectional
llama backbone (the GPT-2 one is broken and causal) with a one-token vocabulary, since ST zeroes
and freezes the token table anyway.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from state.tx.models.state_transition import StateTransitionPerturbationModel

from ..data.groups import control_mask
from ..settings import Architecture, Columns, PerturbationSettings
from .perturbations import Vocabulary


def build_st_model(
    arch: Architecture, genes: list[str], perturbations: list[str], control: str
) -> StateTransitionPerturbationModel:
    """A freshly initialized ST model over ``genes`` (gene space) and one-hot ``perturbations``."""
    n_genes = len(genes)
    backbone = {
        "hidden_size": arch.hidden_dim,
        "intermediate_size": arch.intermediate_dim or arch.mlp_ratio * arch.hidden_dim,
        "num_hidden_layers": arch.n_layers,
        "num_attention_heads": arch.n_heads,
        "num_key_value_heads": arch.n_heads,
        "head_dim": arch.hidden_dim // arch.n_heads,
        "use_cache": False,
        "bidirectional_attention": True,
        "vocab_size": 1,
        "bos_token_id": None,
        "eos_token_id": None,
    }
    with contextlib.redirect_stdout(io.StringIO()):  # ST prints its whole module tree
        return StateTransitionPerturbationModel(
            input_dim=n_genes,
            hidden_dim=arch.hidden_dim,
            output_dim=n_genes,
            pert_dim=len(perturbations),
            gene_dim=n_genes,
            hvg_dim=n_genes,
            gene_names=list(genes),
            control_pert=control,
            dropout=arch.dropout,
            transformer_backbone_key="llama",
            transformer_backbone_kwargs=backbone,
            cell_set_len=arch.cell_set_len,
            n_encoder_layers=arch.encoder_layers,
            n_decoder_layers=arch.decoder_layers,
            loss=arch.loss,
            blur=arch.blur,
            embed_key=None,
            output_space="gene",
            gene_decoder_bool=False,
            loss_fn="mse",
        )


@dataclass
class BaseModel:
    """An ST model with the gene order and perturbation map it was trained on.

    ``pert_vectors`` holds each perturbation's ``pert_emb`` input (row i for
    ``perturbations[i]``): one-hot rows unless the checkpoint was trained on perturbation features.
    """

    model: StateTransitionPerturbationModel
    genes: list[str]
    perturbations: list[str]
    pert_vectors: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.pert_vectors is None:
            self.pert_vectors = torch.eye(len(self.perturbations))

    @property
    def cell_set_len(self) -> int:
        return int(self.model.cell_sentence_len)

    def vocabulary(
        self, data_labels: np.ndarray, control: str, settings: PerturbationSettings = PerturbationSettings()
    ) -> Vocabulary:
        """The perturbation vocabulary for a screen whose perturbed cells carry ``data_labels``.

        Labels the model never saw stop the run with their list when encoded, unless
        ``settings`` lets them train: then the model gets a new input row per unseen label here
        (all of the screen's, so that fine-tuning and inference widen it identically).
        """
        vocab = Vocabulary(self.perturbations, self.pert_vectors, control, settings)
        if settings.unseen_perturbations == "train":
            vocab.extend(self.model, vocab.unseen(data_labels))
        return vocab

    def screen_vocabulary(
        self, obs: pd.DataFrame, columns: Columns, settings: PerturbationSettings = PerturbationSettings()
    ) -> Vocabulary:
        """:meth:`vocabulary` for every perturbed cell of a screen (fine-tuning and inference
        widen the model for the same labels)."""
        labels = obs[columns.perturbation].astype(str).to_numpy()
        return self.vocabulary(labels[~control_mask(obs, columns)], columns.control, settings)
