"""Changing one config key reruns exactly the rules that read it, by dry run over a finished run.

Rules rerun when their params change (Snakemake's rerun triggers), and every rule's params come
from deltatune.settings.workflow: resolved settings, only what the rule reads, no run-only
setting. The report records every setting that shapes a result (provenance.json), so it reruns
on each of them. The table is the tiny config's: one stage, two replicates, three baselines,
three ceiling splits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from conftest import dry_run_jobs, with_key

pytestmark = pytest.mark.workflow

# Every job downstream of preprocessing.
AFTER_PREPROCESS = {
    "preprocess": 1,
    "pair": 3,
    "pretrain": 1,
    "finetune": 2,
    "infer": 4,
    "baseline": 3,
    "reference": 1,
    "evaluate": 7,
    "ceiling": 3,
    "report": 1,
}
CASES = {
    # written out at their default: nothing changes
    "stages.lora_random.weight_decay": (0.0, {}),
    "inference.mode": ("control_mean", {}),
    "preprocess.keep_cells": (None, {}),  # added after results existed: unset, not in any params
    "stages.lora_random.lora.use_dora": (False, {}),  # added later too, at the old behaviour
    "stages.lora_random.full_groups": ([], {}),
    "stages.lora_random.loss.plate_adversarial": (0.0, {}),
    "base_model.pretrain.loss.plate_adversary_lr_scale": (10.0, {}),
    "stages.lora_random.lora.targets": (["decoder"], {"finetune": 2, "infer": 2, "evaluate": 2, "report": 1}),
    # run-only: how rules run, not what they compute
    "stages.lora_random.checkpoint_every": (50, {}),
    "base_model.pretrain.checkpoint_every": (7, {}),
    "compute.accelerator": ("cpu", {}),
    "compute.train_threads": (2, {}),
    "compute.eval_threads": (2, {}),
    # read by one rule (and recorded by the report)
    "data.columns.dose": (None, {"check_obs": 1, "report": 1}),
    "evaluation.ceiling_splits": (4, {"ceiling": 1, "report": 1}),
    "evaluation.cell_cap": (100, {"evaluate": 7, "report": 1}),
    "evaluation.seed": (3, {"evaluate": 7, "report": 1}),
    "report.bootstrap.samples": (500, {"report": 1}),
    "baselines": (["baseline_plate_control"], {"report": 1}),
    "preprocess.max_missing_genes": (0.5, {"report": 1}),  # read only with a checkpoint
    # read by several rules
    "evaluation.profile": ("full", {"evaluate": 7, "ceiling": 3, "report": 1}),
    "stages.lora_random.lr": (3e-3, {"finetune": 2, "infer": 2, "evaluate": 2, "report": 1}),
    "inference.seed": (5, {"infer": 4, "evaluate": 4, "report": 1}),
    "replicates": (3, {"finetune": 1, "infer": 2, "evaluate": 2, "report": 1}),
    "base_model.pretrain.lr": (2e-3, {"pretrain": 1, "finetune": 2, "infer": 4, "evaluate": 4, "report": 1}),
    "preprocess.n_top_genes": (30, AFTER_PREPROCESS),
    "data.columns.drug": (None, {"check_obs": 1, **AFTER_PREPROCESS}),  # the split's unit
    "preprocess.keep_cells.plate": (["p0", "p1"], {"check_obs": 1, **AFTER_PREPROCESS}),
}


def test_a_changed_key_reruns_exactly_the_rules_that_read_it(finished_run, tiny_config):
    def plan(path: str) -> dict[str, int]:
        return dry_run_jobs(finished_run, with_key(tiny_config, path, CASES[path][0]))

    with ThreadPoolExecutor(2) as pool:  # dry runs only read the finished run
        planned = dict(zip(CASES, pool.map(plan, CASES), strict=True))
    wrong = {
        path: {"planned": jobs, "expected": CASES[path][1]} for path, jobs in planned.items() if jobs != CASES[path][1]
    }
    assert not wrong, yaml.safe_dump(wrong, sort_keys=False)
