"""The evaluation step's entry points, files in and files out: what the ``reference``,
``evaluate`` and ``ceiling`` rules run. cell-eval is imported when scores are computed."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..data.genes import measured_genes
from ..data.readers import open_backed, read_cells, read_uns_keys
from ..data.splits import read_split
from ..errors import InputDataError
from ..files import write_json, write_tsv
from ..predict.prediction import INFO
from ..settings import Columns, EvaluateSettings
from .pairs import evaluation_pair, real_test_cells, scored_cells
from .reference import Reference, training_reference
from .scores import ceiling_scores, score_prediction

log = logging.getLogger(__name__)


def reference_file(data: str | Path, split: str | Path, out: str | Path, *, columns: Columns) -> Reference:
    """Systema's reference of the target line ``data`` (the mean of its training perturbations'
    centroids, pooled and per plate), written to ``out`` (.npz); the training cells are streamed
    a chunk at a time."""
    backed = open_backed(data)
    try:
        reference = training_reference(backed, read_split(split), columns, measured_genes(backed).var_names)
    finally:
        backed.file.close()
    log.info(
        "Systema reference: %d training perturbations, %d plates of their own",
        reference.n_perturbations,
        len(reference.plates),
    )
    reference.save(out)
    return reference


def _require_columns(obs: pd.DataFrame, columns: Columns, path: str | Path) -> None:
    """Every column the scores group by, present before any scoring starts."""
    missing = [name for name in columns.required() if name not in obs.columns]
    if missing:
        raise InputDataError(
            f"{path} has no obs column {missing[0]!r} (data.columns names it; the file has {list(obs.columns)[:12]})"
        )


def evaluate_files(
    data: str | Path,
    split: str | Path,
    reference: str | Path,
    predicted: str | Path,
    *,
    out: str | Path,
    out_matching: str | Path,
    columns: Columns,
    settings: EvaluateSettings = EvaluateSettings(),
    threads: int = 1,
) -> tuple[pd.DataFrame, dict]:
    """Score the prediction file ``predicted`` against the target line ``data`` with cell-eval,
    pooled and plate-matched; write the per-perturbation scores (``out``, .tsv) and what plate
    matching used and skipped (``out_matching``, .json), and return both."""
    table = read_split(split)
    if INFO in read_uns_keys(data):
        raise InputDataError(
            f"--data {data} is a prediction (written by deltatune infer or baseline): --data takes the real "
            "target line (data/target_line.h5ad) and --predicted the prediction. Were they swapped?"
        )

    def test_cells(obs: pd.DataFrame):
        _require_columns(obs, columns, data)
        return scored_cells(obs, columns, table)

    target = read_cells(data, test_cells)  # test cells and controls only
    prediction = open_backed(predicted)  # read a chunk of rows at a time
    try:
        _require_columns(prediction.obs, columns, predicted)
        pair = evaluation_pair(target, prediction, table, columns)
        scores, matching = score_prediction(pair, Reference.load(reference, pair.var_names), settings, threads)
    finally:
        prediction.file.close()
    log.info("plate-matched scores: %s", matching)
    write_tsv(scores, out)
    write_json(out_matching, matching)
    return scores, matching


def ceiling_file(
    data: str | Path,
    split: str | Path,
    reference: str | Path,
    out: str | Path,
    *,
    columns: Columns,
    settings: EvaluateSettings = EvaluateSettings(),
    seed: int = 0,
    threads: int = 1,
) -> pd.DataFrame:
    """One split of the real test cells into halves, scored against each other (the ceiling's
    half-depth scores per perturbation), written to ``out`` (.tsv) and returned. Only the test
    cells' and the controls' expression is read, as CSR."""
    table = read_split(split)
    target = read_cells(data, lambda obs: scored_cells(obs, columns, table))
    real = real_test_cells(target, table, columns)
    scores = ceiling_scores(real, Reference.load(reference, real.var_names), columns, settings, threads, seed)
    write_tsv(scores, out)
    return scores
