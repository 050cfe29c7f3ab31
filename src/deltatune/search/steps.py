"""The search's entry points, files in and files out: what the ``trial`` and ``choose`` rules run.

A trial is the workflow's own fine-tuning, inference and evaluation steps
(:func:`~deltatune.train.steps.finetune_files`, :func:`~deltatune.predict.steps.infer_files`,
:func:`~deltatune.evaluate.steps.evaluate_files`), called in turn on the validation view of the
split (:mod:`.validation`) with the trial's settings; only its scores are kept.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from ..data.splits import read_split
from ..evaluate.steps import evaluate_files
from ..files import write_json, write_tsv
from ..model.stage import read_summary
from ..predict.steps import infer_files
from ..settings import (
    CheckpointSettings,
    Columns,
    EvaluateSettings,
    InferenceSettings,
    PerturbationSettings,
    StageSettings,
    from_mapping,
    to_dict,
)
from ..settings.search import with_overrides
from ..train.steps import finetune_files
from .selection import choose, trial_record
from .validation import validation_view

log = logging.getLogger(__name__)


def trial_file(
    data: str | Path,
    split: str | Path,
    base: str | Path,
    pairing: str | Path,
    plates: str | Path,
    reference: str | Path,
    out: str | Path,
    *,
    trial: int,
    settings: StageSettings,
    overrides: dict,
    columns: Columns,
    inference: InferenceSettings = InferenceSettings(),
    evaluation: EvaluateSettings = EvaluateSettings(),
    checkpoint: CheckpointSettings = CheckpointSettings(),
    perturbations: PerturbationSettings = PerturbationSettings(),
    accelerator: str = "auto",
    threads: int = 1,
) -> dict:
    """Train, predict and score one search trial on the validation perturbations of ``data`` and
    write its record (settings, and every searchable score per validation perturbation) to ``out``
    (.json).

    ``settings`` is the trial's stage (the search's start stage with ``overrides``, the searched
    values); ``pairing`` the target line's index for its strategy, ``plates`` the plate index
    inference reads control means from; ``reference`` Systema's reference of the target line.
    """
    model = {"checkpoint": checkpoint, "perturbations": perturbations, "accelerator": accelerator}
    with tempfile.TemporaryDirectory(prefix=".trial-", dir=Path(out).parent) as tmp:
        work = Path(tmp)
        view = work / "split.tsv"
        write_tsv(validation_view(read_split(split)), view)
        finetune_files(
            data,
            view,
            base,
            pairing,
            work / "stage",
            stage=f"trial{trial}",
            columns=columns,
            settings=settings,
            work_dir=work / "checkpoints",
            **model,
        )
        infer_files(
            data,
            view,
            base,
            plates,
            work / "prediction.h5ad",
            columns=columns,
            adapter=work / "stage",
            settings=inference,
            **model,
        )
        scores, _ = evaluate_files(
            data,
            view,
            reference,
            work / "prediction.h5ad",
            out=work / "scores.tsv",
            out_matching=work / "matching.json",
            columns=columns,
            settings=evaluation,
            threads=threads,
        )
        record = trial_record(trial, overrides, scores)
        record["training"] = read_summary(work / "stage")["final_loss"]
    write_json(out, record)
    return record


def choose_files(trials: list[str | Path], *, out: str | Path, out_table: str | Path, metric: str) -> dict:
    """The best of the trials' records on ``metric`` (the highest mean over the validation
    perturbations, the earliest on a tie): written to ``out`` (.json), with every trial's settings
    and score in ``out_table`` (.tsv)."""
    best, table = choose([json.loads(Path(p).read_text()) for p in trials], metric)
    log.info(
        "chosen: trial %d %s (%s %.4f)", best["trial"], json.dumps(best["overrides"]), best["metric"], best["score"]
    )
    write_tsv(table, out_table)
    write_json(out, best)
    return best


def chosen_settings(settings: StageSettings, chosen: str | Path, where: str) -> StageSettings:
    """``settings`` with the chosen trial's values (:func:`choose_files`' record) laid over them:
    the stage ``tuned`` trains with these."""
    overrides = json.loads(Path(chosen).read_text())["overrides"]
    return from_mapping(StageSettings, with_overrides(to_dict(settings), overrides), where)
