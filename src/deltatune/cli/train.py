"""Commands of the training rules (``workflow/rules/train.smk``): ``pretrain``, ``finetune``."""

from __future__ import annotations

import argparse

from ..settings import Architecture, StageSettings, TrainSettings
from . import _args


def _training_arguments(p: argparse.ArgumentParser, settings: type, where: str, out: str) -> None:
    """What both training commands take besides their data: settings, output, resumption, device."""
    p.add_argument("--settings", required=True, help=_args.json_help(settings, where))
    p.add_argument("--out", required=True, help=out)
    p.add_argument("--work-dir", required=True, help="checkpoints for resuming")
    _args.checkpoint_argument(p)
    _args.threads_argument(p)
    _args.accelerator_argument(p)


def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p, split=False)
    p.add_argument("--pairing", required=True, help="pairing index of --data (.npz from pair)")
    p.add_argument("--architecture", required=True, help=_args.json_help(Architecture, "base_model.architecture"))
    _training_arguments(p, TrainSettings, "base_model.pretrain", "ST run directory to write")


def run_pretrain(args: argparse.Namespace) -> None:
    from ..settings import Architecture, TrainSettings, from_json
    from ..train.steps import pretrain_files

    _args.set_threads(args.threads)
    settings = from_json(TrainSettings, args.settings, "base_model.pretrain")
    pretrain_files(
        args.data,
        args.pairing,
        args.out,
        columns=_args.columns(args),
        architecture=from_json(Architecture, args.architecture, "base_model.architecture"),
        settings=_args.with_checkpoint_interval(settings, args),
        work_dir=args.work_dir,
        accelerator=args.accelerator,
    )


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    _args.base_arguments(p)
    p.add_argument("--pairing", required=True, help="pairing index of --data for the stage's strategy")
    p.add_argument("--stage", required=True, help="the stage's name (config stages.<name>)")
    p.add_argument("--overrides", help="the search's chosen trial (.json): its values are laid over --settings")
    _training_arguments(p, StageSettings, "stages.<stage>", "stage directory to write")


def run_finetune(args: argparse.Namespace) -> None:
    from ..search.steps import chosen_settings
    from ..settings import StageSettings, from_json
    from ..train.steps import finetune_files

    _args.set_threads(args.threads)
    where = f"stages.{args.stage}"
    settings = from_json(StageSettings, args.settings, where)
    if args.overrides:
        settings = chosen_settings(settings, args.overrides, where)
    finetune_files(
        args.data,
        args.split,
        args.base,
        args.pairing,
        args.out,
        stage=args.stage,
        columns=_args.columns(args),
        settings=_args.with_checkpoint_interval(settings, args),
        work_dir=args.work_dir,
        accelerator=args.accelerator,
        **_args.model_settings(args),
    )


def register(sub) -> None:
    _args.add_command(
        sub, "pretrain", "train a base ST model on the non-target cell lines", _pretrain_arguments, run_pretrain
    )
    _args.add_command(sub, "finetune", "train one stage's LoRA adapters", _finetune_arguments, run_finetune)
