"""Scoring predictions with cell-eval, never with metrics of our own.

cell-eval compares per-perturbation means against the control mean of each AnnData; both
AnnDatas must hold the same perturbations, control cells included, over the same genes in the
same order. The real AnnData is the target line's test cells and controls; the prediction carries
the same real controls (copied by inference), so predicted controls cannot move the deltas
(cell-eval issues 183 and 196).

Pooled over all controls, a drug's real delta contains the offsets of the plates it sits on. The
plate-matched scores run cell-eval once per plate, on that plate's perturbed cells against that
plate's own controls, and average the delta metrics over plates with cell-count weights. The
noise ceiling is cell-eval's own split-half estimate on the real cells.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from .columns import Columns
from .errors import InputDataError, SettingsError
from .genes import measured_genes
from .pairing import control_mask
from .splits import cells_of_split

log = logging.getLogger(__name__)

PROFILES = ("anndata", "full", "minimal", "vcc", "de", "pds")
PROFILES_WITHOUT_DE = ("anndata",)
MATCHED_SUFFIX = "_matched"


@dataclass(frozen=True)
class EvaluateSettings:
    """Which cell-eval profile to compute: ``anndata`` (fast, no DE) or ``full`` (with DE).

    ``ceiling_splits`` is how many random split-halves of the real cells estimate the noise
    ceiling.
    """

    profile: str = "anndata"
    ceiling_splits: int = 3

    def check(self) -> None:
        if self.profile not in PROFILES:
            raise SettingsError(f"evaluate.profile '{self.profile}' is not one of {PROFILES}")
        if self.ceiling_splits < 1:
            raise SettingsError("evaluation.ceiling_splits must be at least 1")


def _for_cell_eval(adata: ad.AnnData, columns: Columns) -> ad.AnnData:
    """Dense float32 X and no unused categorical levels (cell-eval's DE step crashes on them)."""
    adata.obs[columns.perturbation] = pd.Categorical(adata.obs[columns.perturbation].astype(str))
    adata.X = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float32)
    return adata


def real_test_cells(target: ad.AnnData, split: pd.DataFrame, columns: Columns) -> ad.AnnData:
    """The target line's test cells and all its controls: the real side of every comparison.

    Genes a checkpoint knows but the data lacks (zero-filled by preprocessing) are left out:
    there is nothing real to score them against.
    """
    keep = control_mask(target.obs, columns) | cells_of_split(target.obs, columns, split, "test")
    return _for_cell_eval(measured_genes(target[keep]).copy(), columns)


def evaluation_pair(
    target: ad.AnnData, predicted: ad.AnnData, split: pd.DataFrame, columns: Columns
) -> tuple[ad.AnnData, ad.AnnData]:
    """The real and predicted AnnData for cell-eval, aligned cell by cell and gene by gene."""
    real = real_test_cells(target, split, columns)
    if not set(real.var_names) <= set(predicted.var_names):
        raise InputDataError("the prediction lacks genes of the data: it was made for other data")
    predicted = predicted[:, real.var_names]
    missing = real.obs_names.difference(predicted.obs_names)
    if len(missing):
        raise InputDataError(
            f"prediction lacks {len(missing)} test or control cell(s) of the data (e.g. {list(missing[:3])})"
        )
    return real, _for_cell_eval(predicted[real.obs_names].copy(), columns)


def _evaluator(real: ad.AnnData, pred: ad.AnnData, columns: Columns, skip_de: bool, threads: int, outdir: str):
    from cell_eval import MetricsEvaluator  # heavy import (numba), only where it is needed

    return MetricsEvaluator(
        adata_pred=pred,
        adata_real=real,
        control_pert=columns.control,
        pert_col=columns.perturbation,
        num_threads=threads,
        outdir=outdir,
        skip_de=skip_de,
    )


def score(real: ad.AnnData, pred: ad.AnnData, columns: Columns, settings: EvaluateSettings, threads: int) -> pd.DataFrame:
    """Per-perturbation cell-eval metrics (one row per perturbation, one column per metric)."""
    with tempfile.TemporaryDirectory(prefix="cell-eval-") as outdir:
        evaluator = _evaluator(real, pred, columns, settings.profile in PROFILES_WITHOUT_DE, threads, outdir)
        results, _ = evaluator.compute(profile=settings.profile, write_csv=False)
    return results.to_pandas()


def _batch_subsets(real: ad.AnnData, columns: Columns) -> tuple[dict[str, np.ndarray], dict]:
    """Row masks of the batches that can be scored on their own, and what was skipped.

    A batch needs its own controls and at least two perturbations (cell-eval's discrimination
    metrics compare perturbations with each other).
    """
    if not columns.batch:
        raise SettingsError("plate-matched scores need data.columns.batch")
    batch = real.obs[columns.batch].astype(str).to_numpy()
    labels = real.obs[columns.perturbation].astype(str).to_numpy()
    is_control = labels == columns.control
    table = pd.DataFrame({"batch": batch, "label": labels, "control": is_control})
    controls = table.groupby("batch")["control"].sum()
    perts = table[~is_control].groupby("batch")["label"].nunique()
    usable = controls.index[(controls > 0) & perts.reindex(controls.index, fill_value=0).ge(2)]
    skipped = perts.index.difference(usable)
    info = {
        "batches": len(usable),
        "skipped_batches": sorted(skipped),
        "skipped_cells": int((~is_control & np.isin(batch, skipped)).sum()),
    }
    return {b: batch == b for b in usable}, info


def score_matched(
    real: ad.AnnData, pred: ad.AnnData, columns: Columns, threads: int, ceiling_seed: int | None = None
) -> tuple[pd.DataFrame, dict]:
    """Plate-matched delta metrics per perturbation, and the batches skipped.

    cell-eval runs on every usable batch alone (its perturbed cells against its own controls;
    the prediction carries the same real controls); each delta metric is then averaged over
    batches, weighted by the perturbation's cells in each. With ``ceiling_seed`` the prediction
    is ignored and each batch gets cell-eval's split-half ceiling instead (raw half-depth scores).
    """
    masks, info = _batch_subsets(real, columns)
    parts = []
    with tempfile.TemporaryDirectory(prefix="cell-eval-") as outdir:
        for batch, mask in masks.items():
            evaluator = _evaluator(real[mask].copy(), pred[mask].copy(), columns, True, threads, outdir)
            if ceiling_seed is None:
                results, _ = evaluator.compute(profile="anndata", write_csv=False)
            else:
                results, _ = evaluator.compute_ceiling(profile="anndata", seed=ceiling_seed, write_csv=False)
            counts = real.obs.loc[mask, columns.perturbation].astype(str).value_counts()
            table = results.to_pandas()
            parts.append(table.assign(batch=batch, weight=table["perturbation"].map(counts).to_numpy()))
    scores = pd.concat(parts, ignore_index=True)
    metrics = [c for c in scores.columns if "delta" in c]
    weighted = scores[metrics].mul(scores["weight"], axis=0).assign(perturbation=scores["perturbation"])
    grouped = weighted.groupby("perturbation")
    matched = grouped[metrics].sum().div(scores.groupby("perturbation")["weight"].sum(), axis=0)
    return matched.add_suffix(MATCHED_SUFFIX).reset_index(), info


def ceiling_scores(real: ad.AnnData, columns: Columns, settings: EvaluateSettings, threads: int, seed: int) -> pd.DataFrame:
    """cell-eval's split-half scores of the real cells against themselves, pooled and plate-matched.

    Half-depth values per perturbation; the report maps their means to full depth with
    cell-eval's Spearman-Brown correction.
    """
    with tempfile.TemporaryDirectory(prefix="cell-eval-") as outdir:
        evaluator = _evaluator(real, real, columns, settings.profile in PROFILES_WITHOUT_DE, threads, outdir)
        results, _ = evaluator.compute_ceiling(profile=settings.profile, seed=seed, write_csv=False)
    pooled = results.to_pandas()
    if not columns.batch:
        return pooled
    matched, _ = score_matched(real, real, columns, threads, ceiling_seed=seed)
    return pooled.merge(matched, on="perturbation", how="left")
