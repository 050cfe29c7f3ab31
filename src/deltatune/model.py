"""The State Transition model: building one, and saving / loading it as an ST run directory.

A base model is stored in the layout ``state tx train`` writes (``checkpoints/final.ckpt``,
``pert_onehot_map.pt``, ``var_dims.pkl``, ``config.yaml``), so the same loader serves the
embedded default and a user's own checkpoint. The gene list travels inside the checkpoint's
hyper-parameters (``gene_names``), because ST does not keep its highly-variable-gene list.

Backbone choices follow what works with arc-state 0.11 under transformers 5: a bidirectional
llama backbone (the GPT-2 one is broken and causal) with a one-token vocabulary, since ST zeroes
and freezes the token table anyway.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import lightning
import numpy as np
import torch
import yaml
from state.tx.models.state_transition import StateTransitionPerturbationModel

from .atomic import atomic_path
from .errors import CheckpointError, SettingsError

ST_LOSSES = ("energy", "sinkhorn", "mse", "se")
CHECKPOINT = Path("checkpoints") / "final.ckpt"
PERT_MAP = "pert_onehot_map.pt"
VAR_DIMS = "var_dims.pkl"
GENES = "genes.txt"  # the model's gene order, readable without unpickling anything


@dataclass(frozen=True)
class Architecture:
    """Size of a State Transition model built from scratch (the embedded default's base)."""

    hidden_dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 2
    cell_set_len: int = 16
    loss: str = "energy"
    blur: float = 0.05
    dropout: float = 0.1

    def check(self) -> None:
        if self.loss not in ST_LOSSES:
            raise SettingsError(f"model.architecture.loss '{self.loss}' is not one of {ST_LOSSES}")
        if self.hidden_dim % self.n_heads:
            raise SettingsError(
                f"model.architecture.hidden_dim ({self.hidden_dim}) must be a multiple of n_heads ({self.n_heads})"
            )


def build_st_model(
    arch: Architecture, genes: list[str], perturbations: list[str], control: str
) -> StateTransitionPerturbationModel:
    """A freshly initialized ST model over ``genes`` (gene space) and one-hot ``perturbations``."""
    n_genes = len(genes)
    backbone = {
        "hidden_size": arch.hidden_dim,
        "intermediate_size": arch.mlp_ratio * arch.hidden_dim,
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
            loss=arch.loss,
            blur=arch.blur,
            embed_key=None,
            output_space="gene",
            gene_decoder_bool=False,
            loss_fn="mse",
        )


@dataclass
class BaseModel:
    """An ST model with the gene order and perturbation vocabulary it was trained on."""

    model: StateTransitionPerturbationModel
    genes: list[str]
    perturbations: list[str]

    @property
    def cell_set_len(self) -> int:
        return int(self.model.cell_sentence_len)

    def perturbation_codes(self, labels: np.ndarray) -> np.ndarray:
        """One-hot column of each label; unseen labels are an error naming a few of them."""
        vocab = {p: i for i, p in enumerate(self.perturbations)}
        unique, inverse = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
        codes = np.array([vocab.get(u, -1) for u in unique], dtype=np.int64)
        unseen = unique[codes < 0]
        if len(unseen):
            raise CheckpointError(
                f"{len(unseen)} perturbation(s) are not in the base model's vocabulary of "
                f"{len(vocab)} (e.g. {unseen[:5].tolist()})"
            )
        return codes[inverse]


def save_base_model(base: BaseModel, out_dir: str | Path, config: dict, history=None) -> None:
    """Write ``base`` as an ST run directory, atomically (the directory appears complete or not at all).

    ``history`` (a DataFrame of training steps) is kept beside the checkpoint as ``history.tsv``.
    """
    model = base.model
    n_perts = len(base.perturbations)
    with atomic_path(out_dir, directory=True) as tmp:
        (tmp / CHECKPOINT.parent).mkdir(parents=True)
        torch.save(
            {
                "state_dict": model.state_dict(),
                "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": lightning.__version__,
            },
            tmp / CHECKPOINT,
        )
        eye = torch.eye(n_perts)
        torch.save({p: eye[i] for i, p in enumerate(base.perturbations)}, tmp / PERT_MAP)
        var_dims = {
            "input_dim": len(base.genes),
            "gene_dim": len(base.genes),
            "hvg_dim": len(base.genes),
            "output_dim": len(base.genes),
            "pert_dim": n_perts,
            "gene_names": list(base.genes),
        }
        with open(tmp / VAR_DIMS, "wb") as fh:
            pickle.dump(var_dims, fh)
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / GENES).write_text("\n".join(base.genes) + "\n")
        if history is not None:
            history.to_csv(tmp / "history.tsv", sep="\t", index=False)


def load_base_model(run_dir: str | Path) -> BaseModel:
    """Load an ST run directory written by :func:`save_base_model` (weights-only loading)."""
    run_dir = Path(run_dir)
    for required in (CHECKPOINT, Path(PERT_MAP)):
        if not (run_dir / required).exists():
            raise CheckpointError(f"base model directory {run_dir} has no {required}")
    with contextlib.redirect_stdout(io.StringIO()):
        model = StateTransitionPerturbationModel.load_from_checkpoint(
            run_dir / CHECKPOINT, map_location="cpu", weights_only=True
        )
    genes = model.hparams.get("gene_names")
    if not genes:
        raise CheckpointError(f"{run_dir / CHECKPOINT} does not record its gene names (hparams.gene_names)")
    pert_map = torch.load(run_dir / PERT_MAP, map_location="cpu", weights_only=True)
    order = np.argsort([int(torch.argmax(v)) for v in pert_map.values()])
    perturbations = [list(pert_map)[i] for i in order]
    if len(perturbations) != model.pert_dim:
        raise CheckpointError(
            f"{run_dir / PERT_MAP} lists {len(perturbations)} perturbations but the model's "
            f"pert_dim is {model.pert_dim}"
        )
    model.eval()
    return BaseModel(model=model, genes=list(genes), perturbations=perturbations)


def align_genes(adata, genes: list[str]):
    """``adata`` restricted to ``genes`` in that order; missing genes are an error with counts."""
    names = adata.var_names.astype(str)
    if list(names) == list(genes):
        return adata
    missing = [g for g in genes if g not in set(names)]
    if missing:
        raise CheckpointError(
            f"{len(missing)} of the model's {len(genes)} genes are not in the data "
            f"(e.g. {missing[:5]}); the data has {len(names)} genes"
        )
    return adata[:, list(genes)].copy()
