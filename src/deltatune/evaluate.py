"""Scoring predictions with cell-eval, never with metrics of our own.

cell-eval compares per-perturbation means against the control mean of each AnnData; both
AnnDatas must hold the same perturbations, control cells included, over the same genes in the
same order. The real AnnData is the target line's test cells and controls; the prediction carries
the same real controls (copied by inference), so predicted controls cannot move the deltas
(cell-eval issues 183 and 196).
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
from .splits import cells_of_split

log = logging.getLogger(__name__)

PROFILES = ("anndata", "full", "minimal", "vcc", "de", "pds")
PROFILES_WITHOUT_DE = ("anndata",)


@dataclass(frozen=True)
class EvaluateSettings:
    """Which cell-eval profile to compute: ``anndata`` (fast, no DE) or ``full`` (with DE)."""

    profile: str = "anndata"

    def check(self) -> None:
        if self.profile not in PROFILES:
            raise SettingsError(f"evaluate.profile '{self.profile}' is not one of {PROFILES}")


def _fresh_categories(adata: ad.AnnData, column: str) -> None:
    """Drop unused categorical levels: cell-eval's DE step crashes on them."""
    adata.obs[column] = pd.Categorical(adata.obs[column].astype(str))


def evaluation_pair(
    target: ad.AnnData, predicted: ad.AnnData, split: pd.DataFrame, columns: Columns
) -> tuple[ad.AnnData, ad.AnnData]:
    """The real and predicted AnnData for cell-eval, aligned cell by cell and gene by gene."""
    is_control = (target.obs[columns.perturbation].astype(str) == columns.control).to_numpy()
    real = target[is_control | cells_of_split(target.obs, columns, split, "test")].copy()
    if list(predicted.var_names) != list(real.var_names):
        raise InputDataError("prediction and data have different genes or gene order")
    missing = real.obs_names.difference(predicted.obs_names)
    if len(missing):
        raise InputDataError(
            f"prediction lacks {len(missing)} test or control cell(s) of the data (e.g. {list(missing[:3])})"
        )
    pred = predicted[real.obs_names].copy()
    for adata in (real, pred):
        _fresh_categories(adata, columns.perturbation)
        adata.X = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float32)
    return real, pred


def score(real: ad.AnnData, pred: ad.AnnData, columns: Columns, settings: EvaluateSettings, threads: int) -> pd.DataFrame:
    """Per-perturbation cell-eval metrics (one row per perturbation, one column per metric)."""
    from cell_eval import MetricsEvaluator  # heavy import (numba), only where it is needed

    with tempfile.TemporaryDirectory(prefix="cell-eval-") as outdir:
        evaluator = MetricsEvaluator(
            adata_pred=pred,
            adata_real=real,
            control_pert=columns.control,
            pert_col=columns.perturbation,
            num_threads=threads,
            outdir=outdir,
            skip_de=settings.profile in PROFILES_WITHOUT_DE,
        )
        results, _ = evaluator.compute(profile=settings.profile, write_csv=False)
    return results.to_pandas()
