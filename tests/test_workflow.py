"""The real Snakefile on the tiny config: outputs, no-op rerun, stages that extend others, bad configs.

What a changed setting reruns is tests/test_rerun.py; a run killed and resumed, test_reliability.py.
"""

from __future__ import annotations

import json
import os
import shlex

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import snakemake, write_config

pytestmark = pytest.mark.workflow


def test_the_tiny_run_tests_share_one_worker(request, finished_run):
    """Every test that reads the session's tiny run is in one pytest-xdist group, so that the run is
    made once; under xdist the group is in the test's id too (a pytest that ignored the groups, as
    9.2 does with xdist 3.8, would make the run on both workers)."""
    assert [mark.args[0] for mark in request.node.iter_markers("xdist_group")] == ["tiny_run"]
    if "PYTEST_XDIST_WORKER" in os.environ:
        assert request.node.nodeid.endswith("@tiny_run"), request.node.nodeid


def test_every_output_is_written(finished_run):
    results = finished_run / "results" / "tiny"
    summary = pd.read_csv(results / "report" / "summary.csv")
    assert summary["stage"].tolist() == [
        "base",
        "lora_random",
        "baseline_mean_delta",
        "baseline_other_lines",
        "baseline_plate_control",
        "ceiling",
        "noise_free_bound",
    ]
    assert np.isfinite(summary[["pearson_delta", "pearson_delta_matched"]]).all().all()
    assert summary["n_replicates"].tolist() == [2, 2, 1, 1, 1, 3, 3]
    by_stage = summary.set_index("stage")
    trained = json.loads((results / "models" / "lora_random" / "rep0" / "summary.json").read_text())["parameters"]
    assert by_stage.loc["base", "trainable_parameters"] == 0
    assert by_stage.loc["lora_random", "trainable_parameters"] == trained["trainable"] > 0
    assert summary["trainable_parameters"].iloc[2:].isna().all(), "baselines and real-data rows train nothing"
    assert by_stage.loc["base", "adapted"] == "nothing"
    assert by_stage.loc["lora_random", "adapted"] == "LoRA r4: backbone_attention"
    assert summary["adapted"].iloc[2:].isna().all()
    for metric in ("pearson_delta", "pearson_delta_matched", "pearson_delta_perturbed_mean"):
        position = by_stage[f"{metric}_floor_to_bound"]
        assert position["baseline_plate_control"] == 0 and position["noise_free_bound"] == 1
        assert by_stage.loc["noise_free_bound", metric] > by_stage.loc["ceiling", metric]
    assert by_stage.loc["baseline_plate_control", "no_signal_pearson_delta_matched"] == 1.0
    assert (summary["pearson_delta_ci_low"] <= summary["pearson_delta"]).all()
    assert (summary["pearson_delta"] <= summary["pearson_delta_ci_high"]).all()
    comparison = pd.read_csv(results / "report" / "comparison.csv")
    assert list(comparison.columns) == ["stage", "replicate", "perturbation", "metric", "value"]
    for stage, n_rep in zip(summary["stage"][:-1], summary["n_replicates"][:-1], strict=True):
        for rep in range(n_rep):
            assert stage == "ceiling" or (results / "predictions" / stage / f"rep{rep}.h5ad").exists()
            metrics = pd.read_csv(results / "metrics" / stage / f"rep{rep}.tsv", sep="\t")
            assert len(metrics) == summary["n_perturbations"].iloc[0]
            scored = comparison[(comparison["stage"] == stage) & (comparison["replicate"] == rep)]
            assert np.allclose(
                scored.pivot(index="perturbation", columns="metric", values="value")["pearson_delta"],
                metrics.set_index("perturbation")["pearson_delta"].sort_index(),
            )
    assert (results / "models" / "base" / "checkpoints" / "final.ckpt").exists()
    for rep in (0, 1):
        assert (results / "models" / "lora_random" / f"rep{rep}" / "adapter" / "adapter_model.safetensors").exists()
    seeds = [
        json.loads((results / "models" / "lora_random" / f"rep{rep}" / "summary.json").read_text())["settings"]["seed"]
        for rep in (0, 1)
    ]
    assert seeds == [0, 1]
    assert not (results / "work").exists() or not any((results / "work").iterdir()), "checkpoints are cleaned up"
    for rule in ("simulate", "preprocess", "pretrain", "report"):
        assert (results / "logs" / f"{rule}.log").exists() and (results / "benchmarks" / f"{rule}.tsv").exists()
    for rule in ("finetune", "infer", "baseline", "evaluate", "ceiling"):
        assert any((results / "logs" / rule).iterdir()) and any((results / "benchmarks" / rule).iterdir())


def test_second_run_has_nothing_to_do(finished_run):
    result = snakemake(finished_run, "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_the_config_provenance_records_reruns_nothing(finished_run, tmp_path):
    """provenance.json's config, alone as --configfile, describes the run's every job: nothing to do."""
    record = json.loads((finished_run / "results" / "tiny" / "report" / "provenance.json").read_text())
    config = tmp_path / "provenance_config.yaml"
    config.write_text(yaml.safe_dump(record["config"]))
    result = snakemake(finished_run, "--dry-run", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]


def test_the_report_and_effective_config_keep_the_stages_in_config_order(tmp_path, tiny_config):
    """Stages are the report's rows: the config the report records (and effective_config prints)
    lists them as written, not sorted, so that it reruns nothing when given back."""
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["stages"]["a_later_stage"] = {"extends": "lora_random", "pairing": "batch"}
    write_config(tmp_path, config)
    plan = snakemake(tmp_path, "--dry-run", "--printshellcmds", "all", "effective_config")
    assert plan.returncode == 0, plan.stderr[-3000:]
    for command in ("deltatune report", "deltatune config"):
        line = next(line for line in plan.stdout.splitlines() if command in line)
        words = shlex.split(line)
        recorded = json.loads(words[words.index("--config") + 1])
        assert list(recorded["stages"]) == ["lora_random", "a_later_stage"], command


def test_a_dose_parsed_from_the_labels_reaches_the_preprocessed_data(tmp_path, tiny_config):
    """Tahoe's layout: no dose column, the dose inside drugname_drugconc; the workflow writes it."""
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["data"]["columns"] |= {"dose": "dose_um", "dose_from_label": True}
    write_config(tmp_path, config)
    done = snakemake(tmp_path, "--until", "preprocess")
    assert done.returncode == 0, done.stderr[-3000:]
    import anndata as ad

    obs = ad.read_h5ad(tmp_path / "results" / "tiny" / "data" / "target_line.h5ad", backed="r").obs
    assert np.allclose(obs["dose_um"], obs["concentration"].astype(float)), "the simulated screen's own doses"


def test_stage_extends_another(tmp_path, tiny_config):
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["stages"]["lora_batch"] = {"extends": "lora_random", "pairing": "batch", "lora": {"rank": 2}}
    write_config(tmp_path, config)
    plan = snakemake(tmp_path, "--dry-run", "--printshellcmds")
    assert plan.returncode == 0, plan.stderr[-3000:]
    command = next(line for line in plan.stdout.splitlines() if "--stage lora_batch" in line)
    assert '"pairing":"batch"' in command and '"lr":0.001' in command
    # resolved: every setting of the stage, defaults included, its parent's where it sets none
    assert '"lora":{"alpha":8,"dropout":0.0,"rank":2,"rank_scale":{},"targets":["backbone_attention"]}' in command


def test_misspelled_key_stops_before_anything_runs(tmp_path, tiny_config):
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["stages"]["lora_random"]["learning_rate"] = 0.1
    write_config(tmp_path, config)
    result = snakemake(tmp_path)
    assert result.returncode != 0
    assert "'learning_rate' was unexpected" in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"batch": "plate_id"}, "column 'plate_id' is not in obs"),
        ({"control": "DMSO"}, "control label 'DMSO' does not occur in column 'drugname_drugconc'"),
        ({"dose": "conc_um"}, "column 'conc_um' is not in obs"),  # read by the report alone
    ],
)
def test_bad_columns_stop_before_training(tmp_path, tiny_config, finished_run, columns, message):
    """On one core the check runs first (its priority) and nothing else starts after it fails."""
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["data"]["path"] = str(finished_run / "results" / "tiny" / "data" / "screen.h5ad")
    config["data"]["columns"].update(columns)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--cores", "1")
    assert result.returncode != 0
    log = (tmp_path / "results" / "tiny" / "logs" / "check_obs.log").read_text()
    assert "deltatune check-obs: error: " in log and f"screen.h5ad: {message}" in log
    assert f"screen.h5ad: {message}" in result.stdout + result.stderr, "Snakemake shows the failed check's log"
    assert not (tmp_path / "results" / "tiny" / "data" / "target_line.h5ad").exists(), "nothing ran after the check"
