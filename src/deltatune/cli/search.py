"""Commands of the search rules (``workflow/rules/search.smk``): ``trial``, ``choose``."""

from __future__ import annotations

import argparse
import json

from ..settings import EvaluateSettings, InferenceSettings, StageSettings
from . import _args


def _trial_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    _args.base_arguments(p)
    p.add_argument("--pairing", required=True, help="pairing index of --data for the stage's strategy")
    p.add_argument("--plates", required=True, help="plate pairing index of --data (inference's control means)")
    p.add_argument("--reference", required=True, help="Systema's reference of --data (.npz, rule reference)")
    p.add_argument(
        "--settings", required=True, help=_args.json_help(StageSettings, "stages.<start> with the trial's values")
    )
    p.add_argument("--overrides", required=True, help="JSON: the trial's searched values (dotted setting paths)")
    p.add_argument("--inference", default="{}", help=_args.json_help(InferenceSettings, "inference"))
    p.add_argument("--evaluation", default="{}", help=_args.json_help(EvaluateSettings, "evaluation"))
    p.add_argument("--trial", type=int, required=True, help="the trial's number")
    p.add_argument("--out", required=True, help="the trial's record (.json)")
    _args.checkpoint_argument(p)
    _args.threads_argument(p)
    _args.accelerator_argument(p)


def run_trial(args: argparse.Namespace) -> None:
    from ..errors import SettingsError
    from ..search.steps import trial_file
    from ..settings import EvaluateSettings, InferenceSettings, StageSettings, from_json

    _args.set_threads(args.threads)
    settings = from_json(StageSettings, args.settings, f"search trial {args.trial}")
    settings = _args.with_checkpoint_interval(settings, args)
    try:
        overrides = json.loads(args.overrides)
    except json.JSONDecodeError as err:
        raise SettingsError(f"--overrides: not valid JSON ({err})") from err
    trial_file(
        args.data,
        args.split,
        args.base,
        args.pairing,
        args.plates,
        args.reference,
        args.out,
        trial=args.trial,
        settings=settings,
        overrides=overrides,
        columns=_args.columns(args),
        inference=from_json(InferenceSettings, args.inference, "inference"),
        evaluation=from_json(EvaluateSettings, args.evaluation, "evaluation"),
        accelerator=args.accelerator,
        threads=args.threads,
        **_args.model_settings(args),
    )


def _choose_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", nargs="+", required=True, help="the trials' records (.json)")
    p.add_argument("--out", required=True, help="the chosen trial (.json)")
    p.add_argument("--out-table", required=True, help="every trial's settings and score (.tsv)")
    p.add_argument("--metric", required=True, help="the score the choice is made on (search.metric)")


def run_choose(args: argparse.Namespace) -> None:
    from ..search.steps import choose_files

    choose_files(args.trials, out=args.out, out_table=args.out_table, metric=args.metric)


def register(sub) -> None:
    _args.add_command(
        sub,
        "trial",
        "train, predict and score one search trial on the validation perturbations",
        _trial_arguments,
        run_trial,
    )
    _args.add_command(
        sub, "choose", "choose the search trial with the best validation score", _choose_arguments, run_choose
    )
