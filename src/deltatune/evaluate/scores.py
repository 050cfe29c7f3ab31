"""Scoring predictions with cell-eval, never with metrics of our own.

The pooled scores are cell-eval's on the pair :mod:`.pairs` builds. Pooled over all controls, a drug's real delta contains the offsets of the plates it sits on. The
plate-matched scores run cell-eval once per plate, on that plate's perturbed cells against that
plate's own controls, and average the delta metrics over plates with cell-count weights. The
noise ceiling is cell-eval's own split-half estimate on the real cells.
"""

from __future__ import annotations

import tempfile

import anndata as ad
import numpy as np
import pandas as pd

from ..errors import SettingsError
from ..settings import Columns, EvaluateSettings
from . import MATCHED_SUFFIX

PROFILES_WITHOUT_DE = ("anndata",)


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


def score_prediction(
    real: ad.AnnData, pred: ad.AnnData, columns: Columns, settings: EvaluateSettings, threads: int
) -> tuple[pd.DataFrame, dict]:
    """Per-perturbation pooled scores, joined by the plate-matched ones when the data has plates.

    Returns the table (one row per test perturbation) and what plate matching used and skipped.
    """
    scores = score(real, pred, columns, settings, threads)
    if not columns.batch:
        return scores, {"batches": 0}
    matched, matching = score_matched(real, pred, columns, threads)
    return scores.merge(matched, on="perturbation", how="left"), matching
