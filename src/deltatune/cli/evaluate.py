"""Commands of the evaluation rules (``workflow/rules/evaluate.smk``): ``reference``, ``evaluate``,
``ceiling``."""

from __future__ import annotations

import argparse

from ..settings import EvaluateSettings
from . import _args


def _reference_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    p.add_argument("--out", required=True, help="Systema's reference of the target line (.npz)")


def run_reference(args: argparse.Namespace) -> None:
    from ..evaluate.steps import reference_file

    reference_file(args.data, args.split, args.out, columns=_args.columns(args))


def _scoring_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    p.add_argument("--reference", required=True, help="Systema's reference of the target line (.npz, rule reference)")
    p.add_argument("--settings", default="{}", help=_args.json_help(EvaluateSettings, "evaluation"))
    _args.threads_argument(p)


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    _scoring_arguments(p)
    p.add_argument("--predicted", required=True, help="the prediction (.h5ad, from infer or baseline)")
    p.add_argument("--out", required=True, help="per-perturbation metrics (.tsv)")
    p.add_argument("--out-matching", required=True, help="plate-matched scoring: batches used and skipped (.json)")


def run_evaluate(args: argparse.Namespace) -> None:
    from ..evaluate.steps import evaluate_files
    from ..settings import EvaluateSettings, from_json

    evaluate_files(
        args.data,
        args.split,
        args.reference,
        args.predicted,
        out=args.out,
        out_matching=args.out_matching,
        columns=_args.columns(args),
        settings=from_json(EvaluateSettings, args.settings, "evaluation"),
        threads=args.threads,
    )


def _ceiling_arguments(p: argparse.ArgumentParser) -> None:
    _scoring_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random split")
    p.add_argument("--out", required=True, help="per-perturbation half-depth scores (.tsv)")


def run_ceiling(args: argparse.Namespace) -> None:
    from ..evaluate.steps import ceiling_file
    from ..settings import EvaluateSettings, from_json

    ceiling_file(
        args.data,
        args.split,
        args.reference,
        args.out,
        columns=_args.columns(args),
        settings=from_json(EvaluateSettings, args.settings, "evaluation"),
        seed=args.seed,
        threads=args.threads,
    )


def register(sub) -> None:
    _args.add_command(
        sub,
        "reference",
        "Systema's reference: the mean of the training perturbations' centroids",
        _reference_arguments,
        run_reference,
    )
    _args.add_command(sub, "evaluate", "score a prediction with cell-eval", _evaluate_arguments, run_evaluate)
    _args.add_command(
        sub, "ceiling", "score split halves of the real test cells against each other", _ceiling_arguments, run_ceiling
    )
