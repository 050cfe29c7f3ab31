"""The real and predicted sides cell-eval compares: per-group means over every scored cell, and a
capped, seeded set of the cells themselves.

The scored cells are the target line's test cells and all its controls; the prediction carries
the same real controls (copied by inference), so predicted controls cannot move the deltas
(cell-eval issues 183 and 196). cell-eval's mean-based metrics (``pearson_delta``, the errors,
discrimination) read only each perturbation's mean: fed one row per group, the group's mean over
every cell, they compute exactly their own formulas on exactly those means, and nothing dense of
cells x genes is ever built. The cell-level metrics (``pearson_edistance``: distances between
cells, quadratic in their number; ``clustering_agreement``; the DE metrics of the ``full``
profile) read cells, a documented seeded sample of them (``evaluation.cell_cap`` per
perturbation, ``evaluation.control_cap`` controls); a screen within the caps is scored on all its
cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import anndata as ad
import numpy as np
import pandas as pd

from ..data.genes import measured_genes
from ..data.groups import control_mask, group_codes, ranks_within
from ..data.means import group_means
from ..data.readers import dense_rows
from ..data.splits import cells_of_split
from ..errors import InputDataError
from ..settings import Columns, EvaluateSettings

CHUNK_ROWS = 50_000  # prediction rows read at a time


def for_cell_eval(adata: ad.AnnData, columns: Columns) -> ad.AnnData:
    """``adata`` with no unused categorical levels in the perturbation column (cell-eval's DE step
    crashes on them), in place."""
    adata.obs[columns.perturbation] = pd.Categorical(adata.obs[columns.perturbation].astype(str))
    return adata


def scored_cells(obs: pd.DataFrame, columns: Columns, split: pd.DataFrame) -> np.ndarray:
    """Mask of the cells every comparison scores: the test cells and all controls."""
    return control_mask(obs, columns) | cells_of_split(obs, columns, split, "test")


@dataclass(frozen=True)
class Pair:
    """The scored cells of the target line and where each sits in the prediction.

    ``target`` holds expression for at least the scored cells (rows ``rows``); ``prediction``
    may be backed (its X read in chunks); ``positions`` is each scored cell's row in it;
    ``target_genes`` and ``prediction_genes`` are the measured genes' positions in each.
    """

    target: ad.AnnData
    prediction: ad.AnnData
    rows: np.ndarray
    positions: np.ndarray
    target_genes: np.ndarray
    prediction_genes: np.ndarray
    columns: Columns

    @cached_property
    def obs(self) -> pd.DataFrame:
        """The scored cells' obs (read by every scoring pass)."""
        return self.target.obs.iloc[self.rows]

    @property
    def var_names(self) -> pd.Index:
        return self.target.var_names[self.target_genes]


def evaluation_pair(target: ad.AnnData, prediction: ad.AnnData, split: pd.DataFrame, columns: Columns) -> Pair:
    """The target line's scored cells matched to the prediction, cell by cell and gene by gene.

    Genes a checkpoint knows but the data lacks (zero-filled by preprocessing) are left out:
    there is nothing real to score them against.
    """
    rows = np.flatnonzero(scored_cells(target.obs, columns, split))
    genes = measured_genes(target).var_names
    prediction_genes = prediction.var_names.get_indexer(genes)
    if (prediction_genes < 0).any():
        raise InputDataError("the prediction lacks genes of the data: it was made for other data")
    positions = prediction.obs_names.get_indexer(target.obs_names[rows])
    missing = target.obs_names[rows][positions < 0]
    if len(missing):
        raise InputDataError(
            f"prediction lacks {len(missing)} test or control cell(s) of the data (e.g. {list(missing[:3])})"
        )
    return Pair(target, prediction, rows, positions, target.var_names.get_indexer(genes), prediction_genes, columns)


@dataclass(frozen=True)
class Bulk:
    """Real and predicted mean expression per group, one row per group as cell-eval reads them.

    ``keys`` holds each group's key columns and its number of real cells (``n_cells``).
    """

    keys: pd.DataFrame
    real: ad.AnnData
    pred: ad.AnnData

    def rows(self, mask: np.ndarray) -> Bulk:
        """The groups of ``mask`` (e.g. one plate's)."""
        return Bulk(self.keys[mask], self.real[mask].copy(), self.pred[mask].copy())


def _bulk(keys: pd.DataFrame, counts: np.ndarray, real: np.ndarray, pred: np.ndarray, genes: pd.Index) -> Bulk:
    obs = keys.set_axis([f"group{i}" for i in range(len(keys))])
    var = pd.DataFrame(index=genes)
    real_side, predicted_side = ad.AnnData(X=real, obs=obs, var=var), ad.AnnData(X=pred, obs=obs.copy(), var=var)
    return Bulk(keys.assign(n_cells=counts), real_side, predicted_side)


def bulk_pair(pair: Pair, by: list[str]) -> Bulk:
    """Real and predicted mean expression per group of ``by`` columns over every scored cell.

    The prediction is read a chunk of rows at a time.
    """
    codes, keys = group_codes(pair.obs, by)
    counts = np.bincount(codes, minlength=len(keys))
    real = group_means(pair.target.X[pair.rows][:, pair.target_genes], codes, len(keys))
    predicted_codes = np.full(pair.prediction.n_obs, -1, dtype=np.int64)
    predicted_codes[pair.positions] = codes
    pred = np.zeros_like(real)
    for start in range(0, pair.prediction.n_obs, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, pair.prediction.n_obs)
        block = dense_rows(pair.prediction.X[start:stop])[:, pair.prediction_genes]
        pred += group_means(block, predicted_codes[start:stop], len(keys), counts=counts)
    return _bulk(keys, counts, real, pred, pair.var_names)


def split_half_bulk(real: ad.AnnData, by: list[str], seed: int) -> Bulk:
    """Two disjoint halves of every group's real cells as a "real" and a "predicted" bulk.

    Each group of ``by`` columns gives ``floor(n / 2)`` randomly drawn cells to each half (the
    odd one out to neither), as cell-eval's ``compute_ceiling`` splits them; a group of one cell
    cannot be split and is left out, as there. The first half is the prediction. ``real.X`` may
    be CSR: the halves' means are sums over rows, never a dense matrix of cells.
    """
    codes, keys = group_codes(real.obs, by)
    counts = np.bincount(codes, minlength=len(keys))
    rank = ranks_within(codes, len(keys), np.random.default_rng(seed).random(len(codes)))
    half = counts[codes] // 2
    first = np.where(rank < half, codes, -1)
    second = np.where((rank >= half) & (rank < 2 * half), codes, -1)
    means = [group_means(real.X, side, len(keys)) for side in (second, first)]
    split = counts >= 2
    return _bulk(keys[split].reset_index(drop=True), counts[split], *(m[split] for m in means), real.var_names)


def _capped(obs: pd.DataFrame, columns: Columns, settings: EvaluateSettings) -> np.ndarray:
    """Positions (in order) of every perturbation's first ``cell_cap`` cells and the first
    ``control_cap`` controls, in a random order drawn with ``settings.seed``."""
    codes, keys = group_codes(obs, [columns.perturbation])
    caps = np.where(keys[columns.perturbation].to_numpy() == columns.control, settings.control_cap, settings.cell_cap)
    rank = ranks_within(codes, len(keys), np.random.default_rng(settings.seed).random(len(codes)))
    return np.flatnonzero(rank < caps[codes])


def cell_sample(pair: Pair, settings: EvaluateSettings) -> tuple[ad.AnnData, ad.AnnData]:
    """Real and predicted cells for the cell-level metrics: every perturbation's cells up to
    ``cell_cap``, controls up to ``control_cap``, drawn with ``settings.seed``, in data order."""
    kept = _capped(pair.obs, pair.columns, settings)  # positions among the scored cells, in data order
    real_X = dense_rows(pair.target.X[pair.rows[kept]][:, pair.target_genes])
    positions = pair.positions[kept]
    by_position = np.argsort(positions, kind="stable")  # a backed file reads increasing rows
    pred_X = np.empty_like(real_X)
    pred_X[by_position] = dense_rows(pair.prediction.X[positions[by_position]])[:, pair.prediction_genes]
    sample_obs = pair.obs.iloc[kept].copy()
    var = pd.DataFrame(index=pair.var_names)
    return ad.AnnData(X=real_X, obs=sample_obs, var=var), ad.AnnData(X=pred_X, obs=sample_obs.copy(), var=var)


def real_cell_sample(real: ad.AnnData, columns: Columns, settings: EvaluateSettings) -> ad.AnnData:
    """The real cells' capped sample (:func:`cell_sample`'s), dense, for the ceiling's cell-level metrics."""
    sample = real[_capped(real.obs, columns, settings)]
    return for_cell_eval(ad.AnnData(X=dense_rows(sample.X), obs=sample.obs.copy(), var=sample.var.copy()), columns)


def real_test_cells(target: ad.AnnData, split: pd.DataFrame, columns: Columns) -> ad.AnnData:
    """The target line's scored cells (test cells and controls) and measured genes, X as it is
    stored (CSR from preprocessing): the split-half ceiling reads their means and a capped sample."""
    keep = scored_cells(target.obs, columns, split)
    real = measured_genes(target[keep])
    return for_cell_eval(ad.AnnData(X=real.X, obs=real.obs.copy(), var=real.var.copy()), columns)
