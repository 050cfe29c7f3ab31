"""Training batches for a State Transition model: cell sets with their paired controls.

Everything an epoch needs is drawn up front with one generator seeded by (seed, epoch): the cell
sets, their order and the control pairing. An epoch's batches are therefore a pure function of
the seed and the epoch number, which is what makes a killed run resumable to the same result
(regenerate the epoch, skip the steps already taken) and a new seed per epoch redraw the pairs
without rebuilding the index.

Expression is held in whichever form is smaller: as CSR float32 (sparse data such as HVG counts
of a million cells, where a step densifies only its own rows, its perturbed cells and the
controls paired with them), or as a dense array of the rows that hold any expression (dense-ish
data, where CSR's 8 bytes per stored value cost more than 4 per value and every step's gather
is cheaper). The batches are the same numbers either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ..data.groups import group_codes
from ..data.readers import check_read, dense_rows
from ..errors import InputDataError, SettingsError
from ..model.cellsets import make_cell_sets
from ..pairing.index import PairingIndex
from ..settings import Columns
from ..settings.train import CONTROL_INPUTS
from .adversary import NO_PLATE


@dataclass(frozen=True)
class EpochPlan:
    """Row indices for one epoch: (n_sets, S) perturbed cells and their (n_sets, S) control input.

    ``control`` indexes rows of the data when the input is single control cells, or rows of the
    group-mean table when it is the group mean.
    """

    sets: np.ndarray
    control: np.ndarray


class CellSetBatches:
    """Cell-set batches of one dataset under one pairing index.

    ``adata`` holds log1p expression; ``index`` (built for ``adata``) names the perturbed rows to
    train on and their controls; ``codes`` is each row's row of ``pert_table``, the model's
    ``pert_emb`` input per perturbation (:meth:`deltatune.model.perturbations.Vocabulary.encode`).
    """

    def __init__(
        self,
        adata: ad.AnnData,
        columns: Columns,
        codes: np.ndarray,
        pert_table: torch.Tensor,
        index: PairingIndex,
        control_input: str,
        set_size: int,
    ):
        if control_input not in CONTROL_INPUTS:
            raise SettingsError(f"control_input '{control_input}' is not one of {CONTROL_INPUTS}")
        if len(index.perturbed) == 0:
            raise InputDataError("no perturbed cells to train on")
        index.check_rows_of(adata.obs_names, "the training data")
        check_read(
            adata.X, index.perturbed if control_input == "mean" else np.r_[index.perturbed, index.controls], "training"
        )
        self.index = index
        self.X, self.row_of = _smaller_form(sp.csr_matrix(adata.X, dtype=np.float32))
        self.codes = torch.from_numpy(np.asarray(codes, dtype=np.int64))
        self.pert_table = pert_table
        self.control_input = control_input
        self.set_size = set_size
        set_by = [c for c in (columns.perturbation, columns.cell_type, columns.batch) if c]
        self.set_groups = group_codes(adata.obs.iloc[index.perturbed], set_by)[0]
        # each row's drug (its label without a drug column), for the diversity regularizer
        self.drugs = torch.from_numpy(group_codes(adata.obs, [columns.drug or columns.perturbation])[0])
        self.means = torch.from_numpy(index.mean_table()) if control_input == "mean" else None
        self.plates, self.n_plates = _control_plates(adata.obs, columns.batch, index, control_input)

    @property
    def n_cells(self) -> int:
        return len(self.index.perturbed)

    def plan(self, seed: int, epoch: int) -> EpochPlan:
        """The sets and control input of ``epoch``, shuffled; deterministic in (seed, epoch)."""
        rng = np.random.default_rng([seed, epoch])
        positions, _ = make_cell_sets(self.set_groups, self.set_size, rng)
        positions = positions[rng.permutation(len(positions))]
        if self.control_input == "cells":
            control = self.index.draw(rng)[positions]
        else:
            control = self.index.mean_rows()[positions]
        return EpochPlan(sets=self.index.perturbed[positions], control=control)

    def n_steps(self, sets_per_step: int) -> int:
        """Optimizer steps per epoch (the number of sets does not depend on the draw)."""
        n_sets = int((-(-np.bincount(self.set_groups) // self.set_size)).sum())
        return -(-n_sets // sets_per_step)

    def batches(self, plan: EpochPlan, sets_per_step: int) -> Iterator[dict[str, torch.Tensor]]:
        """ST batches (flat B*S rows): ``pert_emb``, ``ctrl_cell_emb``, ``pert_cell_emb``; and,
        which the model does not read, ``set_drug``, each set's drug code (B,), and
        ``ctrl_plate``, each control input's plate code (B*S,; -1 unknown)."""
        for start in range(0, len(plan.sets), sets_per_step):
            sets = plan.sets[start : start + sets_per_step]
            rows = sets.ravel()
            ctrl = plan.control[start : start + sets_per_step].ravel()
            yield {
                "pert_emb": self.pert_table[self.codes[torch.from_numpy(rows)]],
                "ctrl_cell_emb": (
                    self._rows(ctrl) if self.control_input == "cells" else self.means[torch.from_numpy(ctrl)]
                ),
                "pert_cell_emb": self._rows(rows),
                "set_drug": self.drugs[torch.from_numpy(sets[:, 0])],
                "ctrl_plate": self.plates[torch.from_numpy(ctrl)],
            }

    def _rows(self, rows: np.ndarray) -> torch.Tensor:
        """Rows of the expression matrix, densified (float32, repeats allowed)."""
        if self.row_of is None:
            return torch.from_numpy(dense_rows(self.X[rows]))
        return self.X[torch.from_numpy(self.row_of[rows])]


def _control_plates(
    obs: pd.DataFrame, batch: str | None, index: PairingIndex, control_input: str
) -> tuple[torch.Tensor, int]:
    """Plate code of every control input a plan can name, and the number of plates.

    Control cells are rows of ``obs``; control means are rows of the index's mean table, whose
    plate is known when the pairing groups by plate (its overall fallback row never is). Unknown
    plates are -1 (:data:`deltatune.train.adversary.NO_PLATE`); with none known, the number of
    plates is 0.
    """
    if control_input == "cells":
        unknown = batch is None
        n_inputs = index.n_obs
    else:
        unknown = batch is None or batch not in index.keys.columns
        n_inputs = len(index.count) + 1
    if unknown:
        return torch.full((n_inputs,), NO_PLATE, dtype=torch.int64), 0
    codes, plates = pd.factorize(obs[batch], sort=True)  # a missing plate is -1
    if control_input == "mean":
        codes = np.append(pd.Index(plates.astype(str)).get_indexer(index.keys[batch].astype(str)), NO_PLATE)
    return torch.from_numpy(codes.astype(np.int64)), len(plates)


def _smaller_form(X: sp.csr_matrix) -> tuple[sp.csr_matrix | torch.Tensor, np.ndarray | None]:
    """``X`` as it is (CSR), or, when smaller, the dense rows that store anything with each row's
    place among them (rows storing nothing share one zero row; rows never read are never asked
    for, :func:`deltatune.data.readers.check_read`)."""
    stored = np.flatnonzero(np.diff(X.indptr))
    if (len(stored) + 1) * X.shape[1] * 4 > X.data.nbytes + X.indices.nbytes + X.indptr.nbytes:
        return X, None
    row_of = np.full(X.shape[0], len(stored), dtype=np.int64)
    row_of[stored] = np.arange(len(stored))
    dense = np.zeros((len(stored) + 1, X.shape[1]), dtype=np.float32)
    dense[:-1] = X[stored].toarray()
    return torch.from_numpy(dense), row_of
