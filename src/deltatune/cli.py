"""The ``deltatune`` command line: one subcommand per workflow step.

Rules call these with ``shell:``; every setting arrives as a JSON object (``--settings``,
``--columns``) built from the config by the workflow's ``params:``, so that a changed setting
reruns exactly the steps it affects. Library imports happen inside each subcommand, keeping
start-up cost to what the step needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from .errors import DeltatuneError

log = logging.getLogger("deltatune")
PARAMETER_COUNTS = ("total", "trainable", "new_perturbation_rows")


def _columns(args):
    from .columns import Columns
    from .settings import from_json

    return from_json(Columns, args.columns, "data.columns")


def _read_h5ad(path: str):
    import anndata as ad

    from .errors import InputDataError

    if not Path(path).exists():
        raise InputDataError(f"input file {path} does not exist")
    return ad.read_h5ad(path)


def _write_h5ad(adata, path: str) -> None:
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")


def _write_tsv(table, path: str) -> None:
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def cmd_simulate(args) -> None:
    from .settings import from_json
    from .simulate import ScreenSpec, simulate_screen

    spec = from_json(ScreenSpec, args.settings, "simulate")
    adata = simulate_screen(spec)
    log.info("simulated %d cells x %d genes", adata.n_obs, adata.n_vars)
    _write_h5ad(adata, args.out)


def cmd_preprocess(args) -> None:
    from .atomic import write_json
    from .genes import read_gene_list
    from .preprocess import PreprocessSettings, preprocess_file
    from .settings import from_json

    settings = from_json(PreprocessSettings, args.settings, "preprocess")
    genes = read_gene_list(args.genes) if args.genes else None
    result = preprocess_file(args.input, _columns(args), settings, genes)
    log.info("preprocess: %s", json.dumps(result.summary))
    _write_h5ad(result.base, args.out_base)
    _write_h5ad(result.target, args.out_target)
    _write_tsv(result.split, args.out_split)
    write_json(args.out_summary, result.summary)


def cmd_pair(args) -> None:
    from .pairing import build_pairing_index

    adata = _read_h5ad(args.data)
    index = build_pairing_index(adata.obs, _columns(args), args.strategy).with_means(adata.X)
    log.info("pairing index: %s", json.dumps(index.summary()))
    index.save(args.out, adata.obs_names)


def _pairing(path: str):
    from .errors import InputDataError
    from .pairing import PairingIndex

    if not Path(path).exists():
        raise InputDataError(f"pairing index {path} does not exist")
    return PairingIndex.load(path)


def _base_model(args):
    """The base model of ``--base`` under ``--checkpoint`` settings (safe loading unless trusted)."""
    from .checkpoint import CheckpointSettings, load_base_model
    from .settings import from_json

    return load_base_model(args.base, from_json(CheckpointSettings, args.checkpoint, "base_model"))


def _model_ready_data(args, base):
    """The preprocessed target line, checked to hold exactly the base model's genes."""
    from .genes import check_model_genes

    target = _read_h5ad(args.data)
    check_model_genes(target, base.genes, args.data, args.base)
    return target


def _vocabulary(args, base, target):
    """The base vocabulary for the target line's perturbations (widened when unseen ones may train)."""
    from .pairing import control_mask
    from .perturbations import PerturbationSettings
    from .settings import from_json

    settings = from_json(PerturbationSettings, args.perturbations, "base_model")
    columns = _columns(args)
    labels = target.obs[columns.perturbation].astype(str).to_numpy()[~control_mask(target.obs, columns)]
    return base.vocabulary(labels, columns.control, settings)


def cmd_genes(args) -> None:
    from .atomic import atomic_path

    base = _base_model(args)
    log.info("base model %s: %d genes, %d perturbations", args.base, len(base.genes), len(base.perturbations))
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(base.genes) + "\n")


def cmd_pretrain(args) -> None:
    from .checkpoint import save_base_model
    from .model import Architecture
    from .pretrain import pretrain_base
    from .settings import from_json, to_dict
    from .training import Trainer, TrainSettings, fingerprint

    _set_threads(args.threads)
    arch = from_json(Architecture, args.architecture, "model.architecture")
    settings = from_json(TrainSettings, args.settings, "pretrain")
    effective = {"architecture": to_dict(arch), "training": to_dict(settings)}
    trainer = Trainer(settings, args.work_dir, fingerprint(effective, [args.data, args.pairing]), args.accelerator)
    base, history = pretrain_base(_read_h5ad(args.data), _columns(args), arch, trainer, _pairing(args.pairing))
    save_base_model(base, args.out, {"deltatune": effective}, history)
    shutil.rmtree(args.work_dir, ignore_errors=True)  # the checkpoint only served resuming


def cmd_finetune(args) -> None:
    from .atomic import atomic_path, write_json
    from .finetune import StageSettings, finetune_stage
    from .perturbations import PerturbationSettings
    from .settings import from_json, to_dict
    from .splits import read_split
    from .training import Trainer, fingerprint

    _set_threads(args.threads)
    settings = from_json(StageSettings, args.settings, f"stages.{args.stage}")
    effective = to_dict(settings)
    base = _base_model(args)
    target = _model_ready_data(args, base)
    perturbations = from_json(PerturbationSettings, args.perturbations, "base_model")
    inputs = [args.data, args.split, args.base, args.pairing]
    trainer = Trainer(settings, args.work_dir, fingerprint(effective, inputs), args.accelerator)
    started = time.perf_counter()
    model, history, info = finetune_stage(
        base, target, read_split(args.split), _columns(args), trainer, _pairing(args.pairing), perturbations
    )
    elapsed = time.perf_counter() - started
    with atomic_path(args.out, directory=True) as tmp:
        model.save_pretrained(tmp / "adapter")
        history.to_csv(tmp / "history.tsv", sep="\t", index=False)
        summary = {
            "stage": args.stage,
            "settings": effective,
            "parameters": {k: info[k] for k in PARAMETER_COUNTS},
            "pairing": {k: v for k, v in info.items() if k not in PARAMETER_COUNTS},
            "steps": len(history),
            "train_seconds": round(elapsed, 2),
            "device": str(trainer.fabric.device),
            "final_loss": history.iloc[-1].drop(["epoch", "step"]).to_dict(),
        }
        write_json(tmp / "summary.json", summary)
    shutil.rmtree(args.work_dir, ignore_errors=True)  # the checkpoint only served resuming


def cmd_infer(args) -> None:
    from .infer import InferenceSettings, predict
    from .lora import load_adapter
    from .settings import from_json
    from .splits import read_split

    _set_threads(args.threads)
    settings = from_json(InferenceSettings, args.settings, "inference")
    base = _base_model(args)
    target = _model_ready_data(args, base)
    vocabulary = _vocabulary(args, base, target)  # widens the model before its adapter attaches
    model = load_adapter(base.model, str(Path(args.adapter) / "adapter")) if args.adapter else base.model
    predicted = predict(
        model, base, target, read_split(args.split), _columns(args), _pairing(args.pairing), settings, vocabulary
    )
    _write_h5ad(predicted, args.out)


def cmd_baseline(args) -> None:
    from . import baselines
    from .errors import SettingsError
    from .splits import read_split

    target, split, columns = _read_h5ad(args.data), read_split(args.split), _columns(args)
    index = _pairing(args.pairing)
    if args.kind == "baseline_mean_delta":
        predicted = baselines.mean_delta(target, split, columns, index)
    elif args.kind == "baseline_plate_control":
        predicted = baselines.plate_control(target, split, columns, index)
    else:
        if not (args.base_data and args.base_pairing):
            raise SettingsError("baseline_other_lines needs --base-data and --base-pairing")
        predicted = baselines.other_lines(
            target, split, columns, index, _read_h5ad(args.base_data), _pairing(args.base_pairing)
        )
    _write_h5ad(predicted, args.out)


def cmd_evaluate(args) -> None:
    from .atomic import write_json
    from .evaluate import EvaluateSettings, evaluation_pair, score, score_matched
    from .settings import from_json
    from .splits import read_split

    settings = from_json(EvaluateSettings, args.settings, "evaluate")
    columns = _columns(args)
    real, pred = evaluation_pair(_read_h5ad(args.data), _read_h5ad(args.predicted), read_split(args.split), columns)
    scores = score(real, pred, columns, settings, args.threads)
    matching = {"batches": 0}
    if columns.batch:
        matched, matching = score_matched(real, pred, columns, args.threads)
        scores = scores.merge(matched, on="perturbation", how="left")
    log.info("plate-matched scores: %s", json.dumps(matching))
    _write_tsv(scores, args.out)
    write_json(args.out_matching, matching)


def cmd_ceiling(args) -> None:
    from .evaluate import EvaluateSettings, ceiling_scores, real_test_cells
    from .settings import from_json
    from .splits import read_split

    settings = from_json(EvaluateSettings, args.settings, "evaluate")
    columns = _columns(args)
    real = real_test_cells(_read_h5ad(args.data), read_split(args.split), columns)
    _write_tsv(ceiling_scores(real, columns, settings, args.threads, args.seed), args.out)


def _json_argument(text: str, flag: str) -> dict:
    from .errors import SettingsError

    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SettingsError(f"{flag}: not valid JSON ({err})") from err


def cmd_report(args) -> None:
    from .make_report import Manifest, write_report
    from .settings import from_json

    manifest = from_json(Manifest, args.manifest, "--manifest")
    workflow = _json_argument(args.config, "--config")
    summary = write_report(manifest, workflow["config"], workflow["stages"], args.out_dir)
    print(summary.to_string(index=False), file=sys.stderr)


def cmd_compare(args) -> None:
    from .atomic import atomic_path
    from .compare import compare_runs

    table = compare_runs(args.runs[0], args.runs[1])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    print(f"written to {args.out}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deltatune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=func)
        return p

    def data_args(p, split=True):
        p.add_argument("--data", required=True, help="preprocessed .h5ad")
        if split:
            p.add_argument("--split", required=True, help="split table (.tsv) from preprocess")
        p.add_argument("--columns", required=True, help="JSON: obs column names (data.columns)")

    def compute_args(p, accelerator=False):
        p.add_argument("--threads", type=int, default=1)
        if accelerator:
            p.add_argument("--accelerator", default="auto", help="auto | cpu | gpu (Lightning Fabric)")

    p = add("simulate", cmd_simulate, "simulate a Tahoe-like drug screen (raw counts)")
    p.add_argument("--settings", default="{}", help="JSON: ScreenSpec fields")
    p.add_argument("--out", required=True)

    p = add("preprocess", cmd_preprocess, "validate, normalize, select genes and split a screen")
    p.add_argument("--input", required=True)
    p.add_argument("--columns", required=True)
    p.add_argument("--settings", required=True, help="JSON: PreprocessSettings fields")
    p.add_argument("--genes", help="gene list of a base model (from `deltatune genes`); replaces HVG selection")
    for name in ("base", "target", "split", "summary"):
        p.add_argument(f"--out-{name}", required=True)

    def base_args(p, perturbations=True):
        p.add_argument("--base", required=True, help="base model: ST run directory, or a .ckpt inside one")
        p.add_argument("--checkpoint", default="{}", help="JSON: CheckpointSettings (checkpoint_file, genes, trusted)")
        if perturbations:
            p.add_argument("--perturbations", default="{}",
                           help="JSON: PerturbationSettings (unseen_perturbations, combination_separator)")

    p = add("genes", cmd_genes, "check a base model and write its gene list")
    base_args(p, perturbations=False)
    p.add_argument("--out", required=True, help="gene list (.txt, one per line)")

    p = add("pair", cmd_pair, "build the pairing index and control means of a dataset")
    data_args(p, split=False)
    p.add_argument("--strategy", required=True, help="random | batch | celltype | batch_celltype")
    p.add_argument("--out", required=True, help="index file (.npz)")

    p = add("pretrain", cmd_pretrain, "train a base ST model on the non-target cell lines")
    data_args(p, split=False)
    p.add_argument("--pairing", required=True, help="pairing index of --data (.npz from pair)")
    p.add_argument("--architecture", required=True, help="JSON: Architecture fields")
    p.add_argument("--settings", required=True, help="JSON: TrainSettings fields")
    p.add_argument("--out", required=True, help="ST run directory to write")
    p.add_argument("--work-dir", required=True, help="checkpoints for resuming")
    compute_args(p, accelerator=True)

    p = add("finetune", cmd_finetune, "train one stage's LoRA adapters")
    data_args(p)
    base_args(p)
    p.add_argument("--pairing", required=True, help="pairing index of --data for the stage's strategy")
    p.add_argument("--stage", required=True)
    p.add_argument("--settings", required=True, help="JSON: StageSettings fields")
    p.add_argument("--out", required=True, help="stage directory to write")
    p.add_argument("--work-dir", required=True, help="checkpoints for resuming")
    compute_args(p, accelerator=True)

    p = add("infer", cmd_infer, "predict test perturbations from control means")
    data_args(p)
    base_args(p)
    p.add_argument("--adapter", help="stage directory from finetune (omit for the base model)")
    p.add_argument("--pairing", required=True, help="plate (batch) pairing index of --data: the control means")
    p.add_argument("--settings", default="{}", help="JSON: InferenceSettings fields (mode, seed)")
    p.add_argument("--out", required=True)
    compute_args(p)

    p = add("baseline", cmd_baseline, "predict the test perturbations with a simple baseline")
    data_args(p)
    p.add_argument("--kind", required=True, choices=["baseline_mean_delta", "baseline_other_lines", "baseline_plate_control"])
    p.add_argument("--pairing", required=True, help="plate (batch) pairing index of --data")
    p.add_argument("--base-data", help="the base lines (.h5ad), for baseline_other_lines")
    p.add_argument("--base-pairing", help="plate x cell line pairing index of --base-data")
    p.add_argument("--out", required=True)

    p = add("evaluate", cmd_evaluate, "score a prediction with cell-eval")
    data_args(p)
    p.add_argument("--predicted", required=True)
    p.add_argument("--settings", default="{}", help="JSON: EvaluateSettings fields")
    p.add_argument("--out", required=True, help="per-perturbation metrics (.tsv)")
    p.add_argument("--out-matching", required=True, help="plate-matched scoring: batches used and skipped (.json)")
    compute_args(p)

    p = add("ceiling", cmd_ceiling, "score split halves of the real test cells against each other")
    data_args(p)
    p.add_argument("--settings", default="{}", help="JSON: EvaluateSettings fields")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split")
    p.add_argument("--out", required=True, help="per-perturbation half-depth scores (.tsv)")
    compute_args(p)

    p = add("report", cmd_report, "write the comparison report of a finished run")
    p.add_argument("--manifest", required=True, help="JSON: the run's files (deltatune.make_report.Manifest)")
    p.add_argument("--config", required=True, help='JSON: {"config": workflow config, "stages": resolved stages}')
    p.add_argument("--out-dir", required=True, help="report folder to write")

    p = add("compare", cmd_compare, "side-by-side table of two runs' summary.csv")
    p.add_argument("runs", nargs=2, metavar="RESULTS", help="results/<run> folders (or their report/ folders)")
    p.add_argument("--out", default="comparison_of_runs.csv", help="CSV to write (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    started = time.perf_counter()
    try:
        args.func(args)
    except DeltatuneError as err:
        print(f"deltatune {args.command}: error: {err}", file=sys.stderr)
        return 2
    log.info("%s finished in %.1f s", args.command, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
