"""Commands of the search rules (``workflow/rules/search.smk``): ``trial``, ``choose``.

A trial is the workflow's own ``finetune``, ``infer`` and ``evaluate`` commands, run in one job
on the validation view of the split (:mod:`deltatune.search.validation`) with the trial's
settings; only its scores are kept.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from . import _args


def _trial_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p)
    _args.base_arguments(p)
    p.add_argument("--pairing", required=True, help="pairing index of --data for the stage's strategy")
    p.add_argument("--plates", required=True, help="plate pairing index of --data (inference's control means)")
    p.add_argument("--reference", required=True, help="Systema's reference of --data (.npz, rule reference)")
    p.add_argument("--settings", required=True, help="JSON: the trial's StageSettings (start stage + overrides)")
    p.add_argument("--overrides", required=True, help="JSON: the trial's searched values (dotted setting paths)")
    p.add_argument("--inference", default="{}", help="JSON: InferenceSettings (inference)")
    p.add_argument("--evaluation", default="{}", help="JSON: EvaluateSettings (evaluation)")
    p.add_argument("--metric", required=True, help="score of the choice (search.metric)")
    p.add_argument("--trial", type=int, required=True)
    p.add_argument("--out", required=True, help="the trial's record (.json)")
    _args.threads_argument(p)
    _args.accelerator_argument(p)


def run_trial(args: argparse.Namespace) -> None:
    import pandas as pd

    from ..data.splits import read_split
    from ..files import write_json, write_tsv
    from ..search.selection import trial_record
    from ..search.validation import validation_view
    from . import parser

    shared = ["--data", args.data, "--columns", args.columns, "--threads", str(args.threads)]
    model = ["--base", args.base, "--checkpoint", args.checkpoint, "--perturbations", args.perturbations,
             "--accelerator", args.accelerator]
    with tempfile.TemporaryDirectory(prefix=".trial-", dir=Path(args.out).parent) as tmp:
        work = Path(tmp)
        split = work / "split.tsv"
        write_tsv(validation_view(read_split(args.split)), split)
        shared += ["--split", str(split)]
        steps = [
            ["finetune", *shared, *model, "--pairing", args.pairing, "--stage", f"trial{args.trial}",
             "--settings", args.settings, "--out", str(work / "stage"), "--work-dir", str(work / "checkpoints")],
            ["infer", *shared, *model, "--adapter", str(work / "stage"), "--pairing", args.plates,
             "--settings", args.inference, "--out", str(work / "prediction.h5ad")],
            ["evaluate", *shared, "--reference", args.reference, "--predicted", str(work / "prediction.h5ad"),
             "--settings", args.evaluation,
             "--out", str(work / "scores.tsv"), "--out-matching", str(work / "matching.json")],
        ]
        for step in steps:
            command = parser().parse_args(step)
            command.func(command)
        scores = pd.read_csv(work / "scores.tsv", sep="\t")
        record = trial_record(args.trial, json.loads(args.overrides), scores, args.metric)
        record["training"] = json.loads((work / "stage" / "summary.json").read_text())["final_loss"]
    write_json(args.out, record)


def _choose_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", nargs="+", required=True, help="the trials' records (.json)")
    p.add_argument("--out", required=True, help="the chosen trial (.json)")
    p.add_argument("--out-table", required=True, help="every trial's settings and score (.tsv)")


def run_choose(args: argparse.Namespace) -> None:
    import logging

    from ..files import write_json, write_tsv
    from ..search.selection import choose

    best, table = choose([json.loads(Path(p).read_text()) for p in args.trials])
    logging.getLogger("deltatune").info("chosen: trial %d %s (%s %.4f)", best["trial"], json.dumps(best["overrides"]),
                                        best["metric"], best["score"])
    write_tsv(table, args.out_table)
    write_json(args.out, best)


def register(sub) -> None:
    _args.add_command(sub, "trial", "train, predict and score one search trial on the validation perturbations",
                      _trial_arguments, run_trial)
    _args.add_command(sub, "choose", "choose the search trial with the best validation score", _choose_arguments,
                      run_choose)
