"""The path real users take: their own screen, their own `state tx train` checkpoint, one config file."""

from __future__ import annotations

import json
import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import snakemake, write_config
from own_data import GENES, SINGLES, UNSEEN, benchmark_screen, split_into_files, train_st_run_directory
from safetensors.torch import load_file

from deltatune.errors import CheckpointError
from deltatune.model.checkpoint import CHECKPOINTS, find_checkpoint, load_base_model
from deltatune.model.perturbations import is_one_hot
from deltatune.settings import CheckpointSettings

pytestmark = pytest.mark.workflow

STAGES = ["lora_random", "lora_batch_delta_ext"]  # the naive recipe, and every fix at once


@pytest.fixture(scope="session")
def st_run(tmp_path_factory):
    """A run directory written by arc-state's `state tx train` CLI on a dataset of its own."""
    return train_st_run_directory(tmp_path_factory.mktemp("state"))


def user_config(screen, checkpoint, batch="dataset") -> dict:
    """What a user writes for a public-benchmark-layout file and a checkpoint: nothing else."""
    lora = {"targets": ["backbone_attention"], "rank": 4, "alpha": 8}
    return {
        "run": "own",
        "data": {
            "path": str(screen),
            "columns": {
                "perturbation": "condition",
                "control": "control",
                "cell_type": "cell_type",
                "batch": batch,
                "drug": None,
                "dose": "dose",
            },
            "combination_separator": "+",
            "target_cell_line": "K562",
        },
        "preprocess": {"split": {"val_fraction": 0.0, "test_fraction": 0.3, "seed": 0}},
        "base_model": {"checkpoint": str(checkpoint), "unseen_perturbations": "train"},
        "stages": {
            "lora_random": {"pairing": "random", "epochs": 3, "batch_size": 32, "lr": 1e-3, "lora": lora},
            "lora_batch_delta_ext": {
                "extends": "lora_random",
                "pairing": "batch",
                "loss": {"delta_mse": 0.5, "delta_pearson": 0.3},
                "lora": {
                    "targets": ["backbone_attention", "pert_encoder", "basal_encoder"],
                    "rank_scale": {"basal_encoder": 0.5},
                },
            },
        },
        "replicates": 1,
        "compute": {"train_threads": 1, "eval_threads": 1},
    }


@pytest.fixture(scope="session")
def own_run(tmp_path_factory, st_run):
    """The benchmark file as one file per dataset (as Tahoe comes as one per plate), named by a glob."""
    workdir = tmp_path_factory.mktemp("own")
    (workdir / "data").mkdir()
    split_into_files(benchmark_screen(workdir / "data" / "all.h5ad"), "dataset")
    (workdir / "data" / "all.h5ad").unlink()
    write_config(workdir, user_config("data/all_*.h5ad", st_run))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir / "results" / "own"


def test_a_state_tx_train_run_directory_loads_without_trusting_it(st_run):
    base = load_base_model(st_run)  # weights only: its maps hold numpy scalars, which are data
    assert sorted(base.genes) == sorted(GENES) and base.genes != sorted(GENES)
    assert base.perturbations == sorted([*SINGLES, "non-targeting"])
    assert is_one_hot(base.pert_vectors)
    assert find_checkpoint(st_run)[1] == st_run / CHECKPOINTS / "final.ckpt"
    best = load_base_model(st_run, CheckpointSettings(checkpoint_file="best.ckpt"))
    by_path = load_base_model(st_run / CHECKPOINTS / "best.ckpt")
    for name, weight in best.model.state_dict().items():
        assert torch.equal(weight, by_path.model.state_dict()[name]), name


def _same_weights(a, b) -> bool:
    other = b.model.state_dict()
    return all(torch.equal(w, other[name]) for name, w in a.model.state_dict().items())


def _release(st_run, folder):
    """``st_run`` laid out as Arc releases a checkpoint: the .ckpt at the folder's top."""
    folder.mkdir(parents=True)
    for name in ("config.yaml", "var_dims.pkl", "pert_onehot_map.pt"):
        shutil.copy(st_run / name, folder / name)
    shutil.copy(st_run / CHECKPOINTS / "final.ckpt", folder / "final.ckpt")
    return folder


def test_released_checkpoint_layouts_load_as_downloaded(st_run, tmp_path):
    """A .ckpt at the folder's top, fewshot/zeroshot sub-runs, and a .ckpt path never taken for another folder."""
    reference = load_base_model(st_run)

    flat = _release(st_run, tmp_path / "ST-HVG-X")
    assert find_checkpoint(flat) == (flat, flat / "final.ckpt")
    assert find_checkpoint(flat / "final.ckpt") == (flat, flat / "final.ckpt")
    assert _same_weights(load_base_model(flat), reference)
    assert _same_weights(load_base_model(flat / "final.ckpt"), reference)

    # A release of sub-runs only: the error lists them; naming one loads it.
    nested = tmp_path / "release"
    shutil.copytree(st_run, nested / "fewshot" / "run_a")
    _release(st_run, nested / "zeroshot" / "run_b")
    with pytest.raises(
        CheckpointError, match=r"holds 2 runs and no checkpoint of its own.*fewshot/run_a.*zeroshot/run_b"
    ):
        find_checkpoint(nested)
    assert _same_weights(load_base_model(nested / "fewshot" / "run_a"), reference)
    assert find_checkpoint(nested / "zeroshot" / "run_b")[1] == nested / "zeroshot" / "run_b" / "final.ckpt"

    # The top's own checkpoint wins over its sub-runs.
    shutil.copytree(nested, flat / "more")
    assert find_checkpoint(flat)[1] == flat / "final.ckpt"

    # A .ckpt whose folder lacks the run's files is refused, not resolved two levels up.
    stray = flat / "extra" / "checkpoints"
    stray.mkdir(parents=True)
    shutil.copy(flat / "final.ckpt", stray / "final.ckpt")
    with pytest.raises(CheckpointError, match=r"no pert_onehot_map.pt in .*extra/checkpoints or .*extra\b"):
        load_base_model(stray / "final.ckpt")


def test_an_embedding_space_release_is_refused_with_the_gene_space_one_named(st_run, tmp_path):
    release = _release(st_run, tmp_path / "ST-SE-X")
    checkpoint = torch.load(release / "final.ckpt", map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["embed_key"] = "X_state"
    torch.save(checkpoint, release / "final.ckpt")
    with pytest.raises(CheckpointError, match=r"takes cell embeddings \(embed_key 'X_state'\).*ST-SE.*ST-HVG"):
        load_base_model(release, CheckpointSettings(trusted=True))


def test_the_workflow_runs_on_a_benchmark_layout_file_with_a_state_checkpoint(own_run, st_run):
    summary = pd.read_csv(own_run / "report" / "summary.csv")
    assert summary["stage"].tolist() == [
        "base",
        *STAGES,
        "baseline_mean_delta",
        "baseline_other_lines",
        "baseline_plate_control",
        "ceiling",
        "noise_free_bound",
    ]
    assert np.isfinite(summary[["pearson_delta", "pearson_delta_matched"]]).all().all()
    assert not (own_run / "models" / "base").exists(), "the checkpoint replaces pretraining"

    # Genes: the checkpoint's order, two of them absent from the screen and left out of scoring.
    base = load_base_model(st_run)
    assert (own_run / "data" / "model_genes.txt").read_text().split() == base.genes
    target = ad.read_h5ad(own_run / "data" / "target_line.h5ad")
    assert list(target.var_names) == base.genes
    assert sorted(target.var_names[~target.var["measured"].to_numpy()]) == ["GENE00", "GENE01"]
    assert json.loads((own_run / "data" / "preprocess.json").read_text())["n_genes_missing"] == 2

    split = pd.read_csv(own_run / "data" / "split.tsv", sep="\t")
    # Leakage: the checkpoint's run records its split TOML, which does not hold K562 out.
    leakage = json.loads((own_run / "data" / "preprocess.json").read_text())["leakage"]
    assert leakage["split_file"] == str(st_run.parent / "st_data.toml") and leakage["target_line"] == "not held out"
    assert leakage["test_perturbations_seen"] == sorted(split.loc[split["split"] == "test", "perturbation"])
    header = (own_run / "report" / "report.html").read_text().split("<h2>")[0]
    assert "<b>Leakage.</b>" in header and f"the checkpoint <code>{st_run}</code>" in header

    # Inputs: the glob's two files, each with its size and digest.
    inputs = json.loads((own_run / "report" / "provenance.json").read_text())["inputs"]
    files = {path: record for path, record in inputs.items() if path.startswith("data/")}
    assert sorted(files) == ["data/all_norman2019.h5ad", "data/all_replogle2022.h5ad"]
    for path, record in files.items():
        assert record["bytes"] == (own_run.parents[1] / path).stat().st_size > 0

    # Perturbations: combinations scored, the unseen one predicted through its new input row.
    tested = split.loc[split["split"] == "test", "perturbation"].tolist()
    metrics = pd.read_csv(own_run / "metrics" / "lora_batch_delta_ext" / "rep0.tsv", sep="\t")
    assert sorted(metrics["perturbation"]) == sorted(tested)
    assert any("+" in label for label in tested)
    predicted = ad.read_h5ad(own_run / "predictions" / "base" / "rep0.h5ad", backed="r")
    unseen_tested = [label for label in tested if UNSEEN in label.split("+")]
    assert list(predicted.uns["deltatune_inference"]["unseen_by_base"]) == unseen_tested
    report = (own_run / "report" / "report.html").read_text()
    assert ("Unseen by the base model" in report) == bool(unseen_tested)
    assert all(label in report for label in unseen_tested)


def test_unseen_perturbations_train_their_own_input_rows(own_run, st_run):
    """The new row starts at the mean of the known rows and leaves it during fine-tuning."""
    seen = load_base_model(st_run).model.pert_encoder[0].weight
    for stage in STAGES:
        summary = json.loads((own_run / "models" / stage / "rep0" / "summary.json").read_text())
        assert summary["parameters"]["new_perturbation_rows"] == 1
        weights = load_file(own_run / "models" / stage / "rep0" / "adapter" / "adapter_model.safetensors")
        (row,) = [w for name, w in weights.items() if "pert_encoder.0.unseen" in name]
        assert row.shape == (seen.shape[0], 1)
        assert not torch.allclose(row[:, 0], seen.mean(dim=1)), stage


def test_batch_pairing_without_a_batch_column_stops_before_any_job(tmp_path, st_run):
    write_config(tmp_path, user_config(tmp_path / "screen.h5ad", st_run, batch=None))
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert "stages.lora_batch_delta_ext pair controls by batch" in result.stdout + result.stderr


def test_a_single_line_file_without_any_batch_column_runs(tmp_path, st_run):
    """No batch column and no other cell lines: pooled scores only, and the baselines that need neither."""
    screen = ad.read_h5ad(benchmark_screen(tmp_path / "all_lines.h5ad"))
    screen[screen.obs["cell_type"] == "K562"].copy().write_h5ad(tmp_path / "k562.h5ad")
    config = user_config(tmp_path / "k562.h5ad", st_run, batch=None)
    config["run"] = "single"
    stage = {**config["stages"]["lora_random"], "pairing": "celltype", "loss": {"delta_mse": 0.5, "delta_pearson": 0.3}}
    config["stages"] = {"lora_celltype_delta": stage}  # pairing without plates, the delta-aware loss
    config["baselines"] = ["baseline_mean_delta", "baseline_plate_control"]
    config["evaluation"] = {"ceiling_splits": 1}
    write_config(tmp_path, config)
    result = snakemake(tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    report = tmp_path / "results" / "single" / "report"
    summary = pd.read_csv(report / "summary.csv")
    assert summary["stage"].tolist() == [
        "base",
        "lora_celltype_delta",
        "baseline_mean_delta",
        "baseline_plate_control",
        "ceiling",
        "noise_free_bound",
    ]
    assert np.isfinite(summary["pearson_delta"]).all()
    assert not any(column.endswith("_matched") for column in summary.columns)
    html = (report / "report.html").read_text()
    assert "No batch column" in html and "squares" not in html
