"""Commands of the evaluation rules (``workflow/rules/evaluate.smk``): ``reference``, ``evaluate``,
``ceiling``."""

from __future__ import annotations

import argparse
import json
import logging

from . import _args

log = logging.getLogger("deltatune")


def _reference_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    p.add_argument("--out", required=True, help="Systema's reference of the target line (.npz)")


def run_reference(args: argparse.Namespace) -> None:
    from ..data.genes import measured_genes
    from ..data.readers import open_backed
    from ..data.splits import read_split
    from ..evaluate.reference import training_reference

    cols, split = _args.columns(args), read_split(args.split)
    backed = open_backed(args.data)  # the training cells are streamed a chunk at a time
    try:
        reference = training_reference(backed, split, cols, measured_genes(backed).var_names)
    finally:
        backed.file.close()
    log.info("Systema reference: %d training perturbations, %d plates of their own", reference.n_perturbations,
             len(reference.plates))
    reference.save(args.out)


def _reference_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", required=True, help="Systema's reference of the target line (.npz, rule reference)")


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    _reference_argument(p)
    p.add_argument("--predicted", required=True)
    p.add_argument("--settings", default="{}", help="JSON: EvaluateSettings fields (evaluation)")
    p.add_argument("--out", required=True, help="per-perturbation metrics (.tsv)")
    p.add_argument("--out-matching", required=True, help="plate-matched scoring: batches used and skipped (.json)")
    _args.threads_argument(p)


def run_evaluate(args: argparse.Namespace) -> None:
    from ..data.readers import open_backed, read_cells
    from ..data.splits import read_split
    from ..evaluate.pairs import evaluation_pair, scored_cells
    from ..evaluate.reference import Reference
    from ..evaluate.scores import score_prediction
    from ..files import write_json, write_tsv
    from ..settings import EvaluateSettings, from_json

    settings = from_json(EvaluateSettings, args.settings, "evaluation")
    cols, split = _args.columns(args), read_split(args.split)
    target = read_cells(args.data, lambda obs: scored_cells(obs, cols, split))  # test cells and controls only
    prediction = open_backed(args.predicted)  # read a chunk of rows at a time
    try:
        pair = evaluation_pair(target, prediction, split, cols)
        reference = Reference.load(args.reference, pair.var_names)
        scores, matching = score_prediction(pair, reference, settings, args.threads)
    finally:
        prediction.file.close()
    log.info("plate-matched scores: %s", json.dumps(matching))
    write_tsv(scores, args.out)
    write_json(args.out_matching, matching)


def _ceiling_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    _reference_argument(p)
    p.add_argument("--settings", default="{}", help="JSON: EvaluateSettings fields (evaluation)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split")
    p.add_argument("--out", required=True, help="per-perturbation half-depth scores (.tsv)")
    _args.threads_argument(p)


def run_ceiling(args: argparse.Namespace) -> None:
    from ..data.readers import read_h5ad
    from ..data.splits import read_split
    from ..evaluate.pairs import real_test_cells
    from ..evaluate.reference import Reference
    from ..evaluate.scores import ceiling_scores
    from ..files import write_tsv
    from ..settings import EvaluateSettings, from_json

    settings = from_json(EvaluateSettings, args.settings, "evaluation")
    cols, split = _args.columns(args), read_split(args.split)
    real = real_test_cells(read_h5ad(args.data), split, cols)
    reference = Reference.load(args.reference, real.var_names)
    write_tsv(ceiling_scores(real, reference, cols, settings, args.threads, args.seed), args.out)


def register(sub) -> None:
    _args.add_command(sub, "reference", "Systema's reference: the mean of the training perturbations' centroids",
                      _reference_arguments, run_reference)
    _args.add_command(sub, "evaluate", "score a prediction with cell-eval", _evaluate_arguments, run_evaluate)
    _args.add_command(sub, "ceiling", "score split halves of the real test cells against each other", _ceiling_arguments,
                run_ceiling)
