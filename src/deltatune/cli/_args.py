"""What several commands share: their common arguments, and reading the inputs those name.

Each setting arrives as a JSON object (``--settings``, ``--columns``, ``--checkpoint``) built
from the config by the workflow's ``params:``, named by its config path in every error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Run = Callable[[argparse.Namespace], None]


def add_command(sub, name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None], run: Run) -> None:
    """Register command ``name``: ``arguments`` adds its arguments, ``run`` does its work."""
    parser = sub.add_parser(name, help=help, description=help)
    arguments(parser)
    parser.set_defaults(func=run)


def data_arguments(p: argparse.ArgumentParser, split: bool = True) -> None:
    p.add_argument("--data", required=True, help="preprocessed .h5ad")
    if split:
        p.add_argument("--split", required=True, help="split table (.tsv) from preprocess")
    p.add_argument("--columns", required=True, help="JSON: obs column names (data.columns)")


def base_arguments(p: argparse.ArgumentParser, perturbations: bool = True) -> None:
    p.add_argument("--base", required=True, help="base model: ST run directory, or a .ckpt inside one")
    p.add_argument("--checkpoint", default="{}", help="JSON: CheckpointSettings (checkpoint_file, genes, trusted)")
    if perturbations:
        p.add_argument("--perturbations", default="{}",
                       help="JSON: PerturbationSettings (unseen_perturbations, combination_separator)")


def threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1)


def accelerator_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accelerator", default="auto", help="auto | cpu | gpu (Lightning Fabric)")


def columns(args: argparse.Namespace):
    from ..settings import Columns, from_json

    return from_json(Columns, args.columns, "data.columns")


def base_model(args: argparse.Namespace):
    """The base model of ``--base`` under ``--checkpoint`` settings (safe loading unless trusted)."""
    from ..model.checkpoint import load_base_model
    from ..settings import CheckpointSettings, from_json

    return load_base_model(args.base, from_json(CheckpointSettings, args.checkpoint, "base_model"))


def perturbation_settings(args: argparse.Namespace):
    from ..settings import PerturbationSettings, from_json

    return from_json(PerturbationSettings, args.perturbations, "base_model")


def model_ready_data(args: argparse.Namespace, base, select):
    """The preprocessed target line with expression for the cells ``select(obs)`` marks only,
    checked to hold exactly the base model's genes."""
    from ..data.genes import check_model_genes
    from ..data.readers import read_cells

    target = read_cells(args.data, select)
    check_model_genes(target, base.genes, args.data, args.base)
    return target


def device(accelerator: str):
    """The torch device Lightning Fabric picks for ``accelerator`` (auto: a visible GPU, else the CPU)."""
    from lightning.fabric import Fabric

    return Fabric(accelerator=accelerator, devices=1).device


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))
