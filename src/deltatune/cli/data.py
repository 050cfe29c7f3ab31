"""Commands of the data rules (``workflow/rules/data.smk``): ``simulate``, ``genes``, ``preprocess``."""

from __future__ import annotations

import argparse
import json
import logging

from . import _args

log = logging.getLogger("deltatune")


def _simulate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", default="{}", help="JSON: ScreenSpec fields (data.simulate)")
    p.add_argument("--out", required=True)


def run_simulate(args: argparse.Namespace) -> None:
    from ..data.simulate import write_screen
    from ..settings import ScreenSpec, from_json

    spec = from_json(ScreenSpec, args.settings, "data.simulate")
    log.info("simulated %d cells x %d genes", write_screen(spec, args.out), spec.n_genes)


def _genes_arguments(p: argparse.ArgumentParser) -> None:
    _args.base_arguments(p, perturbations=False)
    p.add_argument("--out", required=True, help="gene list (.txt, one per line)")


def run_genes(args: argparse.Namespace) -> None:
    from ..files import write_text

    base = _args.base_model(args)
    log.info("base model %s: %d genes, %d perturbations", args.base, len(base.genes), len(base.perturbations))
    write_text(args.out, "\n".join(base.genes) + "\n")


def _preprocess_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True)
    p.add_argument("--columns", required=True, help="JSON: obs column names (data.columns)")
    p.add_argument("--settings", required=True, help="JSON: PreprocessSettings fields")
    p.add_argument("--genes", help="gene list of a base model (from `deltatune genes`); replaces HVG selection")
    for name in ("base", "target", "split", "summary"):
        p.add_argument(f"--out-{name}", required=True)


def run_preprocess(args: argparse.Namespace) -> None:
    from ..data.genes import read_gene_list
    from ..data.preprocess import preprocess_file
    from ..files import write_h5ad, write_json, write_tsv
    from ..settings import PreprocessSettings, from_json

    settings = from_json(PreprocessSettings, args.settings, "preprocess")
    genes = read_gene_list(args.genes) if args.genes else None
    result = preprocess_file(args.input, _args.columns(args), settings, genes)
    log.info("preprocess: %s", json.dumps(result.summary))
    write_h5ad(result.base, args.out_base)
    write_h5ad(result.target, args.out_target)
    write_tsv(result.split, args.out_split)
    write_json(args.out_summary, result.summary)


def register(sub) -> None:
    _args.add_command(sub, "simulate", "simulate a Tahoe-like drug screen (raw counts)", _simulate_arguments, run_simulate)
    _args.add_command(sub, "genes", "check a base model and write its gene list", _genes_arguments, run_genes)
    _args.add_command(sub, "preprocess", "validate, normalize, select genes and split a screen", _preprocess_arguments,
                run_preprocess)
