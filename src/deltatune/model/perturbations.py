"""From a screen's perturbation labels to the base model's ``pert_emb`` inputs, by name.

A State Transition model knows its perturbations through ``pert_onehot_map.pt``: a vector per
label, one-hot (the default) or a feature vector (``perturbation_features_file``). The data's
labels are matched to that map by name, never by position:

* a label the map holds gets its vector;
* a combination (``A+B`` with ``combination_separator: "+"``, as public benchmarks write
  double perturbations) gets the sum of its parts' vectors, the multi-hot input of
  combinatorial models; a part equal to the control label (``A+ctrl``) adds nothing;
* any other label is unseen. Unseen labels stop the run with their list, or, when the config
  allows it (``unseen_perturbations: train``), each gets a new one-hot input dimension and with
  it a new trainable row of the first ``pert_encoder`` layer (:class:`WidenedInput`). The base
  weights stay frozen; only the new rows learn, from the fine-tuning cells that carry them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import CheckpointError
from ..settings import PerturbationSettings

NEW_ROWS = "unseen"  # name of the trainable rows inside a widened first layer


class WidenedInput(torch.nn.Module):
    """A Linear layer over one-hot inputs with extra input dimensions for new perturbations.

    ``seen`` is the base model's layer, unchanged; ``unseen`` holds one weight column per new
    perturbation, initialized to the mean of the seen columns (a new perturbation starts as the
    average known one). ``forward`` equals one Linear over the concatenated weights.
    """

    def __init__(self, seen: torch.nn.Linear, n_new: int):
        super().__init__()
        self.seen = seen
        setattr(self, NEW_ROWS, torch.nn.Linear(n_new, seen.out_features, bias=False))
        with torch.no_grad():
            getattr(self, NEW_ROWS).weight.copy_(seen.weight.mean(dim=1, keepdim=True).expand(-1, n_new))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.seen.in_features
        return self.seen(x[..., :k]) + getattr(self, NEW_ROWS)(x[..., k:])


def first_pert_layer(model: torch.nn.Module) -> tuple[str, torch.nn.Linear]:
    """Name and module of the first Linear layer of ``model.pert_encoder``."""
    for name, module in model.named_modules():
        if name.startswith("pert_encoder") and isinstance(module, torch.nn.Linear):
            return name, module
    raise CheckpointError("the base model has no Linear layer in its pert_encoder")


def _set_submodule(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def is_one_hot(vectors: torch.Tensor) -> bool:
    """Whether every row of ``vectors`` is a distinct standard basis vector."""
    if vectors.ndim != 2 or vectors.shape[0] != vectors.shape[1]:
        return False
    return bool(
        ((vectors == 0) | (vectors == 1)).all()
        and (vectors.sum(1) == 1).all()
        and len(torch.unique(vectors.argmax(1))) == len(vectors)
    )


class Vocabulary:
    """The base model's perturbation labels with their ``pert_emb`` vectors, matched by name."""

    def __init__(self, labels: list[str], vectors: torch.Tensor, control: str, settings: PerturbationSettings):
        if len(labels) != len(vectors):
            raise CheckpointError(f"{len(labels)} perturbation labels but {len(vectors)} vectors")
        self.labels = list(labels)
        self.vectors = vectors.float()
        self.control = control
        self.settings = settings
        self.added: list[str] = []  # labels given new input rows by :meth:`extend`
        self._position = {label: i for i, label in enumerate(self.labels)}

    def parts(self, label: str) -> list[str]:
        """The labels a data label is made of: itself if known, else its combination parts."""
        sep = self.settings.combination_separator
        if label in self._position or not sep or sep not in label:
            return [label]
        return [p for p in (s.strip() for s in label.split(sep)) if p and p != self.control]

    def unseen(self, labels: np.ndarray) -> list[str]:
        """Labels (or combination parts) of ``labels`` that the vocabulary lacks, sorted."""
        missing = {str(p) for label in np.unique(np.asarray(labels, dtype=str)) for p in self.parts(label)}
        return sorted(missing - set(self._position))

    def encode(self, labels: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """Per-cell codes into a table of input vectors, one row per distinct label.

        The table is built over distinct labels only, so this costs one pass over the cells
        however many there are. Unseen labels are an error naming them (see :meth:`unseen`).
        """
        unique, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
        unseen = self.unseen(unique)
        if unseen:
            raise CheckpointError(
                f"{len(unseen)} perturbation(s) of the data are not in the base model's vocabulary of "
                f"{len(self.labels)}: {unseen[:20]}{' ...' if len(unseen) > 20 else ''}. Fine-tune "
                "a checkpoint that knows them, drop them from the data, or set "
                "base_model.unseen_perturbations: train to give each a new trainable input row"
            )
        table = torch.zeros(len(unique), self.vectors.shape[1])
        for row, label in enumerate(unique):
            parts = self.parts(label)
            if parts:  # a combination of control parts only stays a zero input
                table[row] = self.vectors[[self._position[p] for p in parts]].sum(0)
        return codes.astype(np.int64), table

    def extend(self, model: torch.nn.Module, new: list[str]) -> None:
        """Give each label of ``new`` a one-hot input dimension and a row in ``model``'s first layer.

        Only one-hot vocabularies can grow: a perturbation given as a feature vector needs its
        features, which no training here can invent.
        """
        if not new:
            return
        if not is_one_hot(self.vectors):
            raise CheckpointError(
                f"{len(new)} perturbation(s) are unseen ({new[:10]}) and the base model encodes "
                "perturbations as feature vectors, not one-hot: add their features to the "
                "checkpoint's pert_onehot_map.pt, or drop them from the data"
            )
        name, layer = first_pert_layer(model)
        _set_submodule(model, name, WidenedInput(layer, len(new)))
        model.pert_dim = layer.in_features + len(new)  # ST reshapes pert_emb by it
        n_old = len(self.labels)
        self.vectors = torch.block_diag(self.vectors, torch.eye(len(new)))
        self.labels += list(new)
        self.added += list(new)
        self._position.update({label: n_old + i for i, label in enumerate(new)})


def new_rows_module(model: torch.nn.Module) -> str | None:
    """Name of the trainable new-rows module of a widened model, if any (for peft's modules_to_save)."""
    for name, module in model.named_modules():
        if isinstance(module, WidenedInput):
            return f"{name}.{NEW_ROWS}"
    return None
