"""Systema's reference: the mean of the training perturbations' real centroids.

Systema (Viñas Torné et al., "Systema: a framework for evaluating genetic perturbation response
prediction beyond systematic variation", Nature Biotechnology 2025) scores a prediction against
one reference profile subtracted from both sides: the average over the **training**
perturbations of each one's mean profile (its centroid), controls excluded. Checked against the
paper's released code, ``mlbio-epfl/systema`` at b03cbd0b: ``evaluation/eval_utils.py:
average_of_perturbation_centroids`` (the unweighted mean over conditions of each condition's
mean over its cells, on perturbed cells only) applied to ``train_adata`` (``evaluation/README.md``).

deltatune computes it for the target line's train split, pooled (every training perturbation's
cells, all plates) and per plate (the training perturbations measured on the plate, from their
cells there), so that the plate-matched score subtracts a reference of the same plate. A plate
with no training perturbation falls back to the pooled reference; :meth:`Reference.fallbacks`
counts such plates. The training cells are streamed a chunk of rows at a time and their sums
kept in float64, so memory holds one chunk. The ``reference`` rule computes it once per run;
every evaluation, ceiling and search trial reads the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ..data.groups import group_codes
from ..data.means import group_means
from ..data.readers import read_rows
from ..data.splits import cells_of_split
from ..errors import InputDataError
from ..files import atomic_path
from ..settings import Columns

CHUNK_ROWS = 100_000  # training cells read at a time


@dataclass(frozen=True)
class Reference:
    """The reference profile over ``genes``: ``pooled``, and per plate in ``plates``.

    ``n_perturbations`` counts the training perturbations behind ``pooled``; ``plates`` holds
    the plates that have at least one.
    """

    genes: pd.Index
    pooled: np.ndarray
    n_perturbations: int
    plates: dict[str, np.ndarray]

    def of_plate(self, plate: str) -> np.ndarray:
        """The plate's own reference, or the pooled one when the plate has no training perturbation."""
        return self.plates.get(str(plate), self.pooled)

    def fallbacks(self, plates: list[str]) -> list[str]:
        """Which of ``plates`` use the pooled reference."""
        return sorted(str(p) for p in plates if str(p) not in self.plates)

    def save(self, path: str | Path) -> None:
        plates = list(self.plates)
        arrays = {
            "genes": np.array(list(self.genes), dtype=str),
            "pooled": self.pooled,
            "n_perturbations": np.array(self.n_perturbations),
            "plates": np.array(plates, dtype=str),
            "plate_means": np.array([self.plates[p] for p in plates]).reshape(len(plates), len(self.genes)),
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path, genes: pd.Index) -> Reference:
        """A reference written by :meth:`save`, which must be over ``genes`` (those scored)."""
        if not Path(path).exists():
            raise InputDataError(f"Systema reference {path} does not exist")
        with np.load(path, allow_pickle=False) as z:
            if list(z["genes"]) != list(genes):
                raise InputDataError(
                    f"Systema reference {path} was computed over other genes than the data's: "
                    "rebuild it (rule reference)"
                )
            plates = dict(zip(map(str, z["plates"]), z["plate_means"], strict=True))
            return cls(pd.Index(genes), z["pooled"], int(z["n_perturbations"]), plates)


def _rows(adata: ad.AnnData, rows: np.ndarray):
    """Expression of ``rows`` (sorted), read from disk when ``adata`` is backed."""
    return read_rows(adata, rows).X if adata.isbacked else adata.X[rows]


def training_reference(adata: ad.AnnData, split: pd.DataFrame, columns: Columns, genes: pd.Index) -> Reference:
    """Systema's reference of the target line ``adata`` (in memory or backed) over ``genes``."""
    rows = np.flatnonzero(cells_of_split(adata.obs, columns, split, "train"))
    if len(rows) == 0:
        raise InputDataError(
            "Systema's reference is the mean of the training perturbations, but the split "
            "assigns no perturbation of the target line to 'train'"
        )
    obs = adata.obs.iloc[rows]
    by = [c for c in (columns.batch,) if c]
    codes, keys = group_codes(obs, [*by, columns.perturbation])
    counts = np.bincount(codes, minlength=len(keys))
    positions = adata.var_names.get_indexer(genes)
    if (positions < 0).any():
        raise InputDataError(f"the target line lacks {int((positions < 0).sum())} of the genes to score")
    centroids = np.zeros((len(keys), len(genes)))
    for start in range(0, len(rows), CHUNK_ROWS):
        part = slice(start, start + CHUNK_ROWS)
        X = _rows(adata, rows[part])[:, positions]
        centroids += group_means(X, codes[part], len(keys), counts=counts)
    label = keys[columns.perturbation].to_numpy()
    # each perturbation's centroid over all its cells: its plates' centroids weighted by their cells
    per_label = pd.DataFrame(centroids * counts[:, None]).groupby(label).sum()
    cells = pd.Series(counts).groupby(label).sum()
    pooled = (per_label.to_numpy() / cells.to_numpy()[:, None]).mean(axis=0)
    plates = {}
    if by:  # a plate's reference: the unweighted mean of its training perturbations' centroids there
        per_plate = pd.DataFrame(centroids).groupby(keys[columns.batch].to_numpy()).mean()
        plates = dict(zip(per_plate.index.astype(str), per_plate.to_numpy(), strict=True))
    return Reference(genes=pd.Index(genes), pooled=pooled, n_perturbations=len(per_label), plates=plates)
