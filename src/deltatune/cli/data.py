"""Commands of the data rules (``workflow/rules/data.smk``): ``simulate``, ``check-obs``, ``genes``,
``preprocess``."""

from __future__ import annotations

import argparse

from ..settings import Columns, PreprocessSettings, ScreenSpec
from . import _args


def _simulate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", default="{}", help=_args.json_help(ScreenSpec, "data.simulate"))
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="simulated screen of raw counts (.h5ad)")
    out.add_argument("--out-dir", help="folder for the plate files, plate1.h5ad ... (settings with plate_files)")
    p.add_argument("--plates", type=int, nargs="+", help="with --out-dir: write only these plates (numbered from 1)")


def run_simulate(args: argparse.Namespace) -> None:
    from ..data.steps import simulate_file, simulate_plate_files
    from ..errors import SettingsError
    from ..settings import ScreenSpec, from_json

    spec = from_json(ScreenSpec, args.settings, "data.simulate")
    if (args.out_dir is None) != (spec.plate_files is None):
        raise SettingsError("--out-dir needs data.simulate.plate_files (a file per plate); --out writes one file")
    if args.plates and args.out_dir is None:
        raise SettingsError("--plates needs --out-dir")
    if args.out_dir is None:
        simulate_file(args.out, spec)
    else:
        simulate_plate_files(args.out_dir, spec, args.plates)


def _check_obs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, nargs="+", help="the screen's file(s) (.h5ad); only their obs is read")
    p.add_argument("--columns", required=True, help=_args.json_help(Columns, "data.columns") + "; every key")
    p.add_argument(
        "--settings", required=True, help=_args.json_help(PreprocessSettings, "preprocess, data.target_cell_line")
    )
    p.add_argument("--out", required=True, help="what was found (.json)")


def run_check_obs(args: argparse.Namespace) -> None:
    from ..data.steps import check_obs_file
    from ..settings import PreprocessSettings, from_json

    check_obs_file(
        args.input,
        args.out,
        columns=_args.columns(args),
        settings=from_json(PreprocessSettings, args.settings, "preprocess"),
    )


def _genes_arguments(p: argparse.ArgumentParser) -> None:
    _args.base_arguments(p, perturbations=False)
    p.add_argument("--out", required=True, help="gene list (.txt, one per line)")


def run_genes(args: argparse.Namespace) -> None:
    from ..model.steps import genes_file

    genes_file(args.base, args.out, **_args.model_settings(args))


def _preprocess_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input", required=True, nargs="+", help="the screen's file(s) (.h5ad, e.g. one per plate): counts or log1p"
    )
    p.add_argument("--columns", required=True, help=_args.json_help(Columns, "data.columns") + "; every key")
    p.add_argument(
        "--settings", required=True, help=_args.json_help(PreprocessSettings, "preprocess, data.target_cell_line")
    )
    p.add_argument("--genes", help="gene list of a base model (from `deltatune genes`); replaces HVG selection")
    p.add_argument(
        "--base-split",
        help="the split TOML the checkpoint trained with: the summary records which test perturbations it saw",
    )
    p.add_argument("--out-base", required=True, help="the base lines (.h5ad)")
    p.add_argument("--out-target", required=True, help="the target line (.h5ad)")
    p.add_argument("--out-split", required=True, help="the split of the target line's perturbations (.tsv)")
    p.add_argument("--out-summary", required=True, help="what preprocessing did (.json)")


def run_preprocess(args: argparse.Namespace) -> None:
    from ..data.steps import preprocess_files
    from ..settings import PreprocessSettings, from_json

    preprocess_files(
        args.input,
        out_base=args.out_base,
        out_target=args.out_target,
        out_split=args.out_split,
        out_summary=args.out_summary,
        columns=_args.columns(args),
        settings=from_json(PreprocessSettings, args.settings, "preprocess"),
        genes=args.genes,
        base_split=args.base_split,
    )


def register(sub) -> None:
    _args.add_command(
        sub, "simulate", "simulate a Tahoe-like drug screen (raw counts)", _simulate_arguments, run_simulate
    )
    _args.add_command(
        sub,
        "check-obs",
        "check a screen's obs: configured columns, target line, controls",
        _check_obs_arguments,
        run_check_obs,
    )
    _args.add_command(sub, "genes", "check a base model and write its gene list", _genes_arguments, run_genes)
    _args.add_command(
        sub, "preprocess", "validate, normalize, select genes and split a screen", _preprocess_arguments, run_preprocess
    )
