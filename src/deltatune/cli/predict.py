"""Commands of the prediction rules (``workflow/rules/predict.smk``): ``infer``, ``baseline``."""

from __future__ import annotations

import argparse

from ..roles import BASELINE_KINDS
from . import _args


def _infer_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    _args.base_arguments(p)
    p.add_argument("--adapter", help="stage replicate directory from finetune: adapter or full weights (omit for the base model)")
    p.add_argument("--pairing", required=True, help="plate (batch) pairing index of --data: the control means")
    p.add_argument("--settings", default="{}", help="JSON: InferenceSettings fields (inference: mode, seed)")
    p.add_argument("--out", required=True)
    _args.threads_argument(p)
    _args.accelerator_argument(p)


def run_infer(args: argparse.Namespace) -> None:
    from ..data.splits import read_split
    from ..pairing.groups import control_mask
    from ..pairing.index import PairingIndex
    from ..predict.infer import predict
    from ..settings import InferenceSettings, from_json
    from ..train.finetune import load_stage

    _args.set_threads(args.threads)
    settings = from_json(InferenceSettings, args.settings, "inference")
    base = _args.base_model(args)
    cols = _args.columns(args)
    target = _args.model_ready_data(args, base, lambda obs: control_mask(obs, cols))  # controls in, nothing else
    vocabulary = base.screen_vocabulary(target.obs, cols, _args.perturbation_settings(args))  # widens before the adapter
    model = load_stage(base.model, args.adapter) if args.adapter else base.model
    model.to(_args.device(args.accelerator))
    predict(model, base, target, read_split(args.split), cols, PairingIndex.load(args.pairing), settings, vocabulary,
            out=args.out)


def _baseline_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    p.add_argument("--kind", required=True, choices=BASELINE_KINDS)
    p.add_argument("--pairing", required=True, help="plate (batch) pairing index of --data")
    p.add_argument("--base-data", help="the base lines (.h5ad), for baseline_other_lines")
    p.add_argument("--base-pairing", help="plate x cell line pairing index of --base-data")
    p.add_argument("--out", required=True)


def run_baseline(args: argparse.Namespace) -> None:
    from ..data.readers import read_h5ad
    from ..data.splits import read_split
    from ..pairing.index import PairingIndex
    from ..predict.baselines import predict_baseline

    base = read_h5ad(args.base_data) if args.base_data else None
    base_index = PairingIndex.load(args.base_pairing) if args.base_pairing else None
    predict_baseline(
        args.kind, read_h5ad(args.data), read_split(args.split), _args.columns(args), PairingIndex.load(args.pairing),
        base, base_index, out=args.out,
    )


def register(sub) -> None:
    _args.add_command(sub, "infer", "predict test perturbations from control means", _infer_arguments, run_infer)
    _args.add_command(sub, "baseline", "predict the test perturbations with a simple baseline", _baseline_arguments,
                run_baseline)
