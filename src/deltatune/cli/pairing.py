"""The command of the pairing rule (``workflow/rules/pairing.smk``): ``pair``."""

from __future__ import annotations

import argparse

from ..settings.pairing import STRATEGIES
from . import _args


def _pair_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p, split=False)
    p.add_argument(
        "--strategy", required=True, choices=STRATEGIES, help="which columns a perturbed cell's controls share with it"
    )
    p.add_argument("--out", required=True, help="index file (.npz)")


def run_pair(args: argparse.Namespace) -> None:
    from ..pairing.steps import pair_file

    pair_file(args.data, args.out, columns=_args.columns(args), strategy=args.strategy)


def register(sub) -> None:
    _args.add_command(sub, "pair", "build the pairing index and control means of a dataset", _pair_arguments, run_pair)
