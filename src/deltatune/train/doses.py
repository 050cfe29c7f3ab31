"""Dose interpolation (design.md 2.6): training targets between the doses a drug was measured at.

For every drug measured at several doses on a plate, and each two neighbouring doses ``d_lo <
d_hi`` of it there, ``points`` intermediate doses are added, equally spaced in log dose (drug
screens space doses by factors, e.g. 0.1, 1, 10 uM): at fraction ``t`` of the way,

    dose = exp((1 - t) ln d_lo + t ln d_hi),   profile = (1 - t) mean_lo + t mean_hi,

where ``mean_lo`` and ``mean_hi`` are the two doses' mean profiles **on that plate**, so no
plate's offset is mixed into another's. The targets are cells, as ST trains on sets of cells: the
plate's cells of the two doses mixed pairwise with the same weights (``min(n_lo, n_hi)`` of
them), then rescaled per gene so that their mean is exactly the interpolated profile. A convex
mix of non-negative cells, rescaled by a ratio rather than shifted, stays non-negative, as log1p
expression must; the spread is that of the mixed real cells, scaled with their mean (the two
doses' drawn cells average close to their whole groups, so the ratios are near 1).

**Never a held-out dose.** An intermediate dose that equals a dose the drug was measured at (a
dose held out for validation or test: 0.1 and 10 uM have 1 uM halfway) is dropped, so no
synthetic training target stands in for a measured condition that is scored.

**What the model is given for an intermediate dose.** A one-hot label has no "between": the
intermediate dose's perturbation input is the same mix of the two neighbouring doses' inputs,
``(1 - t) e_lo + t e_hi`` (for one-hot inputs, weight ``1 - t`` on the lower dose's position and
``t`` on the higher's). ST's perturbation encoder starts with a linear layer, so this input lands
on the segment between the two doses' first-layer embeddings, the point a model that is linear in
dose would use. Only training sees these inputs; every prediction is for a measured label.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ..data.groups import group_codes
from ..data.means import group_means
from ..data.readers import PartlyRead, dense_rows, rows_read
from ..errors import SettingsError
from ..settings import Columns

INTERPOLATED = "interpolated"  # obs column marking the added cells


@dataclass(frozen=True)
class DoseTargets:
    """Interpolated mean profiles: one row of ``keys`` (plate, drug, dose, the two neighbouring
    doses, ``t``) per row of ``means`` (targets x genes); ``low`` and ``high`` are each target's
    two measured (plate, drug, dose) groups, numbered as in ``groups`` (each cell's group)."""

    keys: pd.DataFrame
    means: np.ndarray
    low: np.ndarray
    high: np.ndarray
    groups: np.ndarray


def _neighbours(columns: Columns, obs: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray]:
    """Group codes of (plate, drug, dose) per cell, the groups, and the (lower, upper) group pairs
    of neighbouring doses of one drug on one plate."""
    if not (columns.drug and columns.dose):
        raise SettingsError("dose_interpolation needs data.columns.drug and data.columns.dose")
    by = [c for c in (columns.batch, columns.drug) if c]
    dose = pd.to_numeric(obs[columns.dose], errors="coerce")
    usable = obs.assign(**{columns.dose: dose})
    codes, keys = group_codes(usable, [*by, columns.dose])  # sorted by plate, drug, then dose
    keys = keys.reset_index(drop=True)
    same = np.ones(len(keys) - 1, dtype=bool) if len(keys) > 1 else np.zeros(0, dtype=bool)
    for column in by:
        values = keys[column].to_numpy()
        same &= values[1:] == values[:-1]
    doses = keys[columns.dose].to_numpy(dtype=np.float64)
    same &= np.isfinite(doses[1:]) & np.isfinite(doses[:-1]) & (doses[1:] > doses[:-1]) & (doses[:-1] > 0)
    lower = np.flatnonzero(same)
    return codes, keys, lower, lower + 1


def _fractions(points: int) -> np.ndarray:
    return np.arange(1, points + 1, dtype=np.float64) / (points + 1)


def _on_measured_doses(targets: pd.DataFrame, measured: pd.DataFrame, columns: Columns) -> np.ndarray:
    """Which ``targets`` rows sit on a dose their drug was measured at (in ``measured``'s obs)."""
    doses = (
        measured[[columns.drug, columns.dose]]
        .assign(**{columns.dose: pd.to_numeric(measured[columns.dose], errors="coerce")})
        .dropna()
        .drop_duplicates()
    )
    pairs = (
        targets[[columns.drug, columns.dose]]
        .reset_index(names="row")
        .merge(doses.astype({columns.drug: str}), on=columns.drug, suffixes=("", "_measured"))
    )
    same = np.isclose(pairs[columns.dose], pairs[f"{columns.dose}_measured"], rtol=1e-6, atol=0.0)
    return np.isin(np.arange(len(targets)), pairs.loc[same, "row"].to_numpy())


def interpolated_targets(
    adata: ad.AnnData, columns: Columns, points: int, measured: pd.DataFrame | None = None
) -> DoseTargets:
    """The interpolated mean profiles of ``adata``'s perturbed cells (all of them are used), less
    those on a dose their drug was measured at in ``measured`` (an obs table: the whole line)."""
    codes, keys, lower, upper = _neighbours(columns, adata.obs)
    means = group_means(adata.X, codes, len(keys))
    t = np.tile(_fractions(points), len(lower))
    lo, hi = np.repeat(lower, points), np.repeat(upper, points)
    d_lo, d_hi = keys[columns.dose].to_numpy(np.float64)[lo], keys[columns.dose].to_numpy(np.float64)[hi]
    table = (
        keys.iloc[lo]
        .reset_index(drop=True)
        .assign(
            **{columns.dose: np.exp((1 - t) * np.log(d_lo) + t * np.log(d_hi))},
            dose_low=d_lo,
            dose_high=d_hi,
            t=t,
        )
    )
    keep = np.ones(len(table), dtype=bool) if measured is None else ~_on_measured_doses(table, measured, columns)
    profiles = (1 - t)[:, None] * means[lo] + t[:, None] * means[hi]
    return DoseTargets(table[keep].reset_index(drop=True), profiles[keep].astype(np.float32), lo[keep], hi[keep], codes)


def _with_mean(cells: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Non-negative ``cells`` rescaled per gene to average ``mean`` (a gene that is 0 in every cell
    takes the mean's value)."""
    current = cells.mean(axis=0)
    scale = np.divide(mean, current, out=np.zeros_like(current), where=current > 0)
    return np.where(current > 0, cells * scale, mean).astype(np.float32)


def with_interpolated_doses(
    adata: ad.AnnData,
    rows: np.ndarray,
    columns: Columns,
    codes: np.ndarray,
    inputs: torch.Tensor,
    points: int,
    seed: int,
) -> tuple[ad.AnnData, np.ndarray, torch.Tensor, np.ndarray]:
    """``adata`` with interpolated cells appended, built from its perturbed ``rows``.

    ``codes`` is each row's row of ``inputs`` (the perturbation inputs). Returns the extended
    AnnData (column :data:`INTERPOLATED` marks the added cells; rows ``adata`` never read stay
    unreadable), codes and inputs, and for every added cell a perturbed row of ``rows`` it is
    paired like (same plate and cell type).
    """
    train = adata[rows]
    targets = interpolated_targets(train, columns, points, measured=adata.obs)
    rng = np.random.default_rng(seed)
    members = pd.Series(np.arange(len(rows))).groupby(targets.groups).apply(np.asarray)  # positions per group
    X = sp.csr_matrix(train.X, dtype=np.float32)
    blocks, like, new_codes, new_inputs, labels = [], [], [], [], []
    for k, (lo, hi, t) in enumerate(zip(targets.low, targets.high, targets.keys["t"], strict=True)):
        n = min(len(members[lo]), len(members[hi]))
        a, b = rng.permutation(members[lo])[:n], rng.permutation(members[hi])[:n]
        mixed = (1 - t) * dense_rows(X[a]) + t * dense_rows(X[b])
        blocks.append(_with_mean(mixed, targets.means[k]))
        like.append(rows[a])
        code_lo, code_hi = codes[rows[a[0]]], codes[rows[b[0]]]
        new_inputs.append((1 - t) * inputs[code_lo] + t * inputs[code_hi])
        new_codes.append(np.full(n, len(inputs) + k, dtype=np.int64))
        drug, dose = targets.keys.loc[k, columns.drug], targets.keys.loc[k, columns.dose]
        labels += [f"{drug} at {dose:.4g} ({INTERPOLATED})"] * n
    if not blocks:
        return adata, codes, inputs, np.zeros(0, dtype=np.int64)
    like = np.concatenate(like)
    obs = adata.obs.iloc[like].copy()
    obs[columns.perturbation] = labels
    obs[columns.dose] = np.repeat(targets.keys[columns.dose].to_numpy(), [len(b) for b in blocks])
    obs.index = [f"{INTERPOLATED}_{i}" for i in range(len(obs))]
    added = ad.AnnData(X=sp.csr_matrix(np.vstack(blocks).astype(np.float32)), obs=obs, var=adata.var)
    extended = ad.concat([adata, added], merge="first")
    extended.X = PartlyRead(extended.X, read=np.r_[rows_read(adata.X), np.ones(added.n_obs, dtype=bool)])
    extended.obs[INTERPOLATED] = np.r_[np.zeros(adata.n_obs, dtype=bool), np.ones(added.n_obs, dtype=bool)]
    return (
        extended,
        np.concatenate([codes, np.concatenate(new_codes)]),
        torch.cat([inputs, torch.stack(new_inputs)]),
        like,
    )
