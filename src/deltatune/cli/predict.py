"""Commands of the prediction rules (``workflow/rules/predict.smk``): ``infer``, ``baseline``."""

from __future__ import annotations

import argparse

from ..settings import InferenceSettings
from . import _args


def _infer_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    _args.base_arguments(p)
    p.add_argument(
        "--adapter", help="stage replicate directory from finetune: adapter or full weights (omit for the base model)"
    )
    p.add_argument("--pairing", required=True, help="plate (batch) pairing index of --data: the control means")
    p.add_argument("--settings", default="{}", help=_args.json_help(InferenceSettings, "inference"))
    p.add_argument("--out", required=True, help="the prediction (.h5ad): predicted test cells and the real controls")
    _args.threads_argument(p)
    _args.accelerator_argument(p)


def run_infer(args: argparse.Namespace) -> None:
    from ..predict.steps import infer_files
    from ..settings import InferenceSettings, from_json

    _args.set_threads(args.threads)
    infer_files(
        args.data,
        args.split,
        args.base,
        args.pairing,
        args.out,
        columns=_args.columns(args),
        adapter=args.adapter,
        settings=from_json(InferenceSettings, args.settings, "inference"),
        accelerator=args.accelerator,
        **_args.model_settings(args),
    )


def _baseline_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    p.add_argument("--kind", required=True, help="the baseline (config baselines)")
    p.add_argument("--pairing", required=True, help="plate (batch) pairing index of --data")
    p.add_argument("--base-data", help="the base lines (.h5ad), for baseline_other_lines")
    p.add_argument("--base-pairing", help="plate x cell line pairing index of --base-data")
    p.add_argument("--out", required=True, help="the prediction (.h5ad)")


def run_baseline(args: argparse.Namespace) -> None:
    from ..predict.steps import baseline_file

    baseline_file(
        args.kind,
        args.data,
        args.split,
        args.pairing,
        args.out,
        columns=_args.columns(args),
        base_data=args.base_data,
        base_pairing=args.base_pairing,
    )


def register(sub) -> None:
    _args.add_command(sub, "infer", "predict test perturbations from control means", _infer_arguments, run_infer)
    _args.add_command(
        sub, "baseline", "predict the test perturbations with a simple baseline", _baseline_arguments, run_baseline
    )
