"""The real Snakefile on the tiny config: outputs, no-op rerun, partial rerun, bad configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake, write_config

pytestmark = pytest.mark.workflow


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's job stats table."""
    lines = result.stdout.splitlines()
    start = lines.index("Job stats:") + 3
    jobs = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def test_every_output_is_written(finished_run):
    results = finished_run / "results" / "tiny"
    summary = pd.read_csv(results / "report" / "summary.csv")
    assert summary["stage"].tolist() == [
        "base", "lora_random", "baseline_mean_delta", "baseline_other_lines", "baseline_plate_control", "ceiling",
        "noise_free_bound",
    ]
    assert np.isfinite(summary[["pearson_delta", "pearson_delta_matched"]]).all().all()
    assert summary["n_replicates"].tolist() == [2, 2, 1, 1, 1, 3, 3]
    by_stage = summary.set_index("stage")
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
            assert np.allclose(scored.pivot(index="perturbation", columns="metric", values="value")["pearson_delta"],
                               metrics.set_index("perturbation")["pearson_delta"].sort_index())
    assert (results / "models" / "base" / "checkpoints" / "final.ckpt").exists()
    for rep in (0, 1):
        assert (results / "models" / "lora_random" / f"rep{rep}" / "adapter" / "adapter_model.safetensors").exists()
    seeds = [json.loads((results / "models" / "lora_random" / f"rep{rep}" / "summary.json").read_text())["settings"]["seed"]
             for rep in (0, 1)]
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


def test_changed_stage_setting_reruns_only_that_stage(finished_run, tiny_config):
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["stages"]["lora_random"]["lr"] = 3e-3
    write_config(finished_run, config)
    data = finished_run / "results" / "tiny" / "data" / "target_line.h5ad"
    before = data.stat().st_mtime_ns
    plan = snakemake(finished_run, "--dry-run")
    assert planned_jobs(plan) == {"all": 1, "evaluate": 2, "finetune": 2, "infer": 2, "report": 1}
    result = snakemake(finished_run)
    assert result.returncode == 0, result.stderr[-4000:]
    assert data.stat().st_mtime_ns == before


def test_stage_extends_another(tmp_path, tiny_config):
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["stages"]["lora_batch"] = {"extends": "lora_random", "pairing": "batch", "lora": {"rank": 2}}
    write_config(tmp_path, config)
    plan = snakemake(tmp_path, "--dry-run", "--printshellcmds")
    assert plan.returncode == 0, plan.stderr[-3000:]
    command = next(line for line in plan.stdout.splitlines() if "--stage lora_batch" in line)
    assert '"pairing":"batch"' in command and '"lr":0.001' in command
    assert '"lora":{"alpha":8,"rank":2,"targets":["backbone_attention"]}' in command


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
    ],
)
def test_bad_columns_stop_before_training(tmp_path, tiny_config, finished_run, columns, message):
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["data"]["path"] = str(finished_run / "results" / "tiny" / "data" / "screen.h5ad")
    config["data"]["columns"].update(columns)
    write_config(tmp_path, config)
    result = snakemake(tmp_path)
    assert result.returncode != 0
    log = (tmp_path / "results" / "tiny" / "logs" / "preprocess.log").read_text()
    assert "deltatune preprocess: error: " in log and f"screen.h5ad: {message}" in log
    assert not (tmp_path / "results" / "tiny" / "models").exists()


def _long_stage_config(tiny_config, screen: Path) -> dict:
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    config["data"]["path"] = str(screen)
    config["stages"]["lora_random"].update(epochs=150, checkpoint_every=20)
    config["replicates"] = 1
    return config


def test_killed_stage_resumes_to_the_same_metrics(tmp_path, tiny_config, finished_run):
    """SIGKILL the whole run mid-stage; `--rerun-incomplete` resumes from the stage's checkpoint."""
    import signal
    import time

    config = _long_stage_config(tiny_config, finished_run / "results" / "tiny" / "data" / "screen.h5ad")
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for workdir in (killed, clean):
        write_config(workdir, config)

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(killed),
           "--cores", "2", "--configfile", str(killed / "config.yaml")]
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    checkpoint = killed / "results" / "tiny" / "work" / "lora_random" / "rep0" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert run.poll() is None, "the run ended before the stage wrote a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (killed / "results" / "tiny" / "models" / "lora_random" / "rep0").exists()

    assert snakemake(killed, "--unlock").returncode == 0
    resumed = snakemake(killed, "--rerun-incomplete")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    log = (killed / "results" / "tiny" / "logs" / "finetune" / "lora_random" / "rep0.log").read_text()
    assert "resuming from" in log

    assert snakemake(clean).returncode == 0
    for name in ("metrics/lora_random/rep0.tsv", "models/lora_random/rep0/adapter/adapter_model.safetensors"):
        a = (killed / "results" / "tiny" / name).read_bytes()
        b = (clean / "results" / "tiny" / name).read_bytes()
        assert a == b, name
