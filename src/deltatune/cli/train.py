"""Commands of the training rules (``workflow/rules/train.smk``): ``pretrain``, ``finetune``."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from . import _args


def _training_arguments(p: argparse.ArgumentParser, settings: str, out: str) -> None:
    """What both training commands take besides their data: settings, output, resumption, device."""
    p.add_argument("--settings", required=True, help=f"JSON: {settings} fields")
    p.add_argument("--out", required=True, help=out)
    p.add_argument("--work-dir", required=True, help="checkpoints for resuming")
    _args.threads_argument(p)
    _args.accelerator_argument(p)


def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p, split=False)
    p.add_argument("--pairing", required=True, help="pairing index of --data (.npz from pair)")
    p.add_argument("--architecture", required=True, help="JSON: Architecture fields (base_model.architecture)")
    _training_arguments(p, "TrainSettings (base_model.pretrain)", "ST run directory to write")


def run_pretrain(args: argparse.Namespace) -> None:
    from ..data.readers import read_h5ad
    from ..model.checkpoint import save_base_model
    from ..pairing.index import PairingIndex
    from ..settings import Architecture, TrainSettings, from_json, to_dict
    from ..train.loop import Trainer, fingerprint
    from ..train.pretrain import pretrain_base

    _args.set_threads(args.threads)
    arch = from_json(Architecture, args.architecture, "base_model.architecture")
    settings = from_json(TrainSettings, args.settings, "base_model.pretrain")
    effective = {"architecture": to_dict(arch), "training": to_dict(settings)}
    trainer = Trainer(settings, args.work_dir, fingerprint(effective, [args.data, args.pairing]), args.accelerator)
    base, history = pretrain_base(read_h5ad(args.data), _args.columns(args), arch, trainer, PairingIndex.load(args.pairing))
    save_base_model(base, args.out, {"deltatune": effective}, history)
    shutil.rmtree(args.work_dir, ignore_errors=True)  # the checkpoint only served resuming


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    _args.base_arguments(p)
    p.add_argument("--pairing", required=True, help="pairing index of --data for the stage's strategy")
    p.add_argument("--stage", required=True)
    p.add_argument("--overrides", help="the search's chosen trial (.json): its settings are laid over --settings")
    _training_arguments(p, "StageSettings (stages.<stage>)", "stage directory to write")


def _with_chosen(settings: str, chosen: str | None) -> str:
    """The stage's settings (JSON) with the chosen search trial's values set, when given."""
    if not chosen:
        return settings
    from ..settings.search import with_overrides

    return json.dumps(with_overrides(json.loads(settings), json.loads(Path(chosen).read_text())["overrides"]))


def run_finetune(args: argparse.Namespace) -> None:
    from ..data.splits import read_split, training_cells
    from ..pairing.index import PairingIndex
    from ..settings import StageSettings, from_json, to_dict
    from ..train.finetune import finetune_stage, save_stage
    from ..train.loop import Trainer, fingerprint

    _args.set_threads(args.threads)
    settings = from_json(StageSettings, _with_chosen(args.settings, args.overrides), f"stages.{args.stage}")
    columns, split = _args.columns(args), read_split(args.split)
    base = _args.base_model(args)
    target = _args.model_ready_data(args, base, lambda obs: training_cells(obs, columns, split))
    inputs = [args.data, args.split, args.base, args.pairing]
    trainer = Trainer(settings, args.work_dir, fingerprint(to_dict(settings), inputs), args.accelerator)
    result = finetune_stage(
        base, target, split, columns, trainer, PairingIndex.load(args.pairing), _args.perturbation_settings(args)
    )
    save_stage(result, args.stage, trainer, args.out)
    shutil.rmtree(args.work_dir, ignore_errors=True)  # the checkpoint only served resuming


def register(sub) -> None:
    _args.add_command(sub, "pretrain", "train a base ST model on the non-target cell lines", _pretrain_arguments,
                run_pretrain)
    _args.add_command(sub, "finetune", "train one stage's LoRA adapters", _finetune_arguments, run_finetune)
