"""Any prediction scored the way the workflow scores its stages, in one call from a notebook.

:func:`scorecard` takes a prediction (deltatune's, or someone else's such as ``state tx infer``
output), the real data it predicts and the split, and returns what the report would say of it:
cell-eval's scores pooled and plate-matched, Systema's score against the training perturbations,
the collapse measure, each with its interval, beside the zero-effect floor
(``baseline_plate_control``), the replicate ceiling and the noise-free bound. Every number comes
from the workflow's own steps: Systema's reference (:mod:`deltatune.evaluate.reference`), the
scoring (:mod:`deltatune.evaluate.scores`), the floor (:mod:`deltatune.predict.baselines`) and the
summary (:mod:`.tables`); nothing here computes a score of its own, and torch is never imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import pandas as pd

from .. import roles
from ..data.genes import measured_genes
from ..data.readers import read_h5ad
from ..data.splits import cells_of_split, read_split
from ..errors import SettingsError
from ..evaluate.pairs import evaluation_pair, real_test_cells
from ..evaluate.reference import training_reference
from ..evaluate.scores import ceiling_scores, score_prediction
from ..pairing.index import build_pairing_index
from ..predict.baselines import predict_baseline
from ..predict.prediction import as_prediction
from ..settings import BootstrapSettings, Columns, EvaluateSettings
from ..settings.pairing import plate_strategy
from .tables import summarize, tidy_metrics


@dataclass(frozen=True)
class Scorecard:
    """A prediction's scores beside the floor, the ceiling and the bound.

    ``summary`` has the columns of ``summary.csv`` and one row each for the prediction (named as
    given), ``baseline_plate_control``, ``ceiling`` and ``noise_free_bound``; ``comparison``
    holds every per-perturbation score (``comparison.csv``); ``matching`` says which plates the
    plate-matched scores used and skipped.
    """

    summary: pd.DataFrame
    comparison: pd.DataFrame
    matching: dict


def _read(data: str | Path | ad.AnnData) -> ad.AnnData:
    return data if isinstance(data, ad.AnnData) else read_h5ad(data)


def scorecard(
    prediction: str | Path | ad.AnnData,
    real: str | Path | ad.AnnData,
    split: str | Path | pd.DataFrame,
    *,
    columns: Columns = Columns(),
    evaluation: EvaluateSettings = EvaluateSettings(),
    bootstrap: BootstrapSettings = BootstrapSettings(),
    name: str = "prediction",
    threads: int = 1,
) -> Scorecard:
    """Score ``prediction`` against ``real`` as the workflow scores a stage, with floor and ceiling.

    ``real`` is one cell line's log1p expression: its controls, the test cells predicted and the
    training cells (Systema's reference is their mean centroid), with the ``obs`` columns of
    ``columns``; ``split`` assigns its perturbations to ``train`` and ``test`` (a table with
    columns ``perturbation`` and ``split``, as ``preprocess`` writes it). ``prediction`` names the
    real test cells it predicts (obs names) over the real genes (var names, any order, more
    allowed); its own control cells, if any, are replaced by the real ones. The ceiling takes
    ``evaluation.ceiling_splits`` random split-halves of the real cells.
    """
    if name in (roles.FLOOR_BASELINE, roles.CEILING_ROW, roles.BOUND_ROW):
        raise SettingsError(f"name '{name}' is a row of the scorecard already: call the prediction otherwise")
    real = _read(real)
    table = split if isinstance(split, pd.DataFrame) else read_split(split)
    test = cells_of_split(real.obs, columns, table, "test").nonzero()[0]
    predicted = as_prediction(_read(prediction), real, test, columns)
    reference = training_reference(real, table, columns, measured_genes(real).var_names)
    index = build_pairing_index(real.obs, columns, plate_strategy(columns.batch)).with_means(real.X)
    floor = predict_baseline(roles.FLOOR_BASELINE, real, table, columns, index)
    scores, matching = {}, {}
    for row, made in ((name, predicted), (roles.FLOOR_BASELINE, floor)):
        pair = evaluation_pair(real, made, table, columns)
        scores[row], matching[row] = score_prediction(pair, reference, evaluation, threads)
    cells = real_test_cells(real, table, columns)
    ceilings = [
        ceiling_scores(cells, reference, columns, evaluation, threads, seed)
        for seed in range(evaluation.ceiling_splits)
    ]
    comparison = tidy_metrics(
        {name: [scores[name]], roles.FLOOR_BASELINE: [scores[roles.FLOOR_BASELINE]], roles.CEILING_ROW: ceilings}
    )
    rows_roles = {name: roles.BASE, roles.FLOOR_BASELINE: roles.FLOOR, roles.CEILING_ROW: roles.CEILING}
    rows_roles = roles.with_bound(rows_roles)
    return Scorecard(summarize(comparison, rows_roles, bootstrap, parents={}), comparison, matching[name])
