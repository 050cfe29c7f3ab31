"""What several commands share: their common arguments, and the settings those carry.

Each setting arrives as a JSON object (``--settings``, ``--columns``, ``--checkpoint``) built
from the config by the workflow's ``params:``, named by its config path in every error. The
run-only settings (threads, the device, how often to checkpoint) arrive as plain arguments.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace

from ..settings import CheckpointSettings, Columns, PerturbationSettings

Run = Callable[[argparse.Namespace], None]


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each optional argument's text with its default, as argparse's
    ``ArgumentDefaultsHelpFormatter`` does, but not for required arguments or those without one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required or action.default in (None, argparse.SUPPRESS) or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


def add_command(sub, name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None], run: Run) -> None:
    """Register command ``name``: ``arguments`` adds its arguments, ``run`` does its work. Its
    ``--help`` shows every argument's default (a rule passes most of them; a user at the
    terminal should not have to read the code for what an omitted one means)."""
    parser = sub.add_parser(name, help=help, description=help, formatter_class=DefaultsFormatter)
    arguments(parser)
    parser.set_defaults(func=run)


def json_help(cls: type, where: str) -> str:
    """Help of a JSON settings argument: the config section it comes from and every key it takes
    (the fields of ``cls``; unknown keys are an error, keys left out take the defaults)."""
    from dataclasses import fields

    return f"JSON object, config {where} ({cls.__name__}); keys: {', '.join(f.name for f in fields(cls))}"


def data_arguments(p: argparse.ArgumentParser, split: bool = True) -> None:
    p.add_argument("--data", required=True, help="preprocessed .h5ad")
    if split:
        p.add_argument("--split", required=True, help="split table (.tsv) from preprocess")
    p.add_argument("--columns", required=True, help=json_help(Columns, "data.columns") + "; every key, null: not read")


def base_arguments(p: argparse.ArgumentParser, perturbations: bool = True) -> None:
    p.add_argument("--base", required=True, help="base model: ST run directory, or a .ckpt inside one")
    p.add_argument("--checkpoint", default="{}", help=json_help(CheckpointSettings, "base_model"))
    if perturbations:
        p.add_argument(
            "--perturbations",
            default="{}",
            help=json_help(PerturbationSettings, "base_model.unseen_perturbations, data.combination_separator"),
        )


def threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="CPU threads (run-only: changes no result's meaning)")


def accelerator_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--accelerator",
        default="auto",
        choices=("auto", "cpu", "gpu"),
        help="device (Lightning Fabric): auto takes a visible GPU, else the CPU",
    )


def checkpoint_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (run-only; default: the settings')")


def with_checkpoint_interval(settings, args: argparse.Namespace):
    """Training ``settings`` with the run-only ``--checkpoint-every``, if given, checked like any setting."""
    from ..errors import SettingsError

    if args.checkpoint_every is None:
        return settings
    changed = replace(settings, checkpoint_every=args.checkpoint_every)
    try:
        changed.check()
    except SettingsError as err:
        raise SettingsError(f"--checkpoint-every: {err}") from None
    return changed


def columns(args: argparse.Namespace):
    """``--columns``, every key given: the defaults are Tahoe-100M's names, and filling a key the
    user left out with one would score by a column they never chose."""
    from dataclasses import fields

    from ..errors import SettingsError
    from ..settings import Columns, from_json

    found = from_json(Columns, args.columns, "--columns")
    given = json.loads(args.columns)
    # every column name must be given; the dose_from_label flag may be left out
    names = [f.name for f in fields(Columns) if f.name != "dose_from_label"]
    missing = [name for name in names if name not in given]
    if missing:
        raise SettingsError(
            f"--columns lacks {missing}: give every column name of {names}, "
            "null for a column the screen does not have (no default is filled in)"
        )
    return found


def model_settings(args: argparse.Namespace) -> dict:
    """How to load the base model and match the data's labels to it, as step keyword arguments."""
    from ..settings import CheckpointSettings, PerturbationSettings, from_json

    found = {"checkpoint": from_json(CheckpointSettings, args.checkpoint, "base_model")}
    if hasattr(args, "perturbations"):
        found["perturbations"] = from_json(PerturbationSettings, args.perturbations, "base_model")
    return found


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))
