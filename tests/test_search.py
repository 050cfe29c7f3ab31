"""The hyper-parameter search: trials as jobs on the validation perturbations, the test split unread."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from conftest import dry_run_jobs, snakemake, with_key, write_config

from deltatune.errors import InputDataError, SettingsError
from deltatune.files import write_h5ad
from deltatune.search.selection import choose, trial_record
from deltatune.search.validation import validation_view
from deltatune.settings import from_mapping
from deltatune.settings.search import DESIGN_SPACE, SearchSettings, trials, with_overrides

TRIALS = 2
SEARCH = {
    "start": "lora_random",
    "trials": TRIALS,
    "seed": 0,
    "parameters": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "lora.rank": {"values": [2, 4]}},
}


def test_random_trials_are_seeded_draws_inside_the_ranges():
    search = from_mapping(SearchSettings, {"start": "s", "trials": 20}, "search")
    drawn = trials(search)
    assert drawn == trials(search) and drawn != trials(
        from_mapping(SearchSettings, {"start": "s", "trials": 20, "seed": 1}, "search")
    )
    assert set(drawn[0]) == set(DESIGN_SPACE)
    assert all(1e-4 <= t["lr"] <= 1e-3 and t["lora.rank"] in (4, 8, 16) and 0.5 <= t["loss.base"] <= 1.0 for t in drawn)
    grid = trials(
        from_mapping(
            SearchSettings,
            {
                "start": "s",
                "method": "grid",
                "parameters": {"lora.rank": {"values": [4, 8]}, "adaptation": {"values": ["lora", "full"]}},
            },
            "search",
        )
    )
    assert grid == [{"adaptation": a, "lora.rank": r} for a in ("lora", "full") for r in (4, 8)]
    with pytest.raises(SettingsError, match="a grid search needs 'values'"):
        from_mapping(
            SearchSettings, {"start": "s", "method": "grid", "parameters": {"lr": {"low": 1, "high": 2}}}, "search"
        )


def test_overrides_set_nested_settings_without_touching_the_stage():
    stage = {"lr": 1e-3, "loss": {"base": 1.0, "delta_mse": 0.5}}
    tuned = with_overrides(stage, {"lr": 2e-4, "loss.delta_mse": 0.1, "lora.rank": 16})
    assert tuned == {"lr": 2e-4, "loss": {"base": 1.0, "delta_mse": 0.1}, "lora": {"rank": 16}}
    assert stage == {"lr": 1e-3, "loss": {"base": 1.0, "delta_mse": 0.5}}


def test_the_validation_view_swaps_val_and_test():
    split = pd.DataFrame({"perturbation": list("abcd"), "split": ["train", "val", "test", "test"]})
    assert validation_view(split)["split"].tolist() == ["train", "test", "val", "val"]
    with pytest.raises(InputDataError, match="val_fraction"):
        validation_view(split.assign(split=["train", "test", "test", "test"]))


def test_the_best_trial_is_chosen_and_ties_go_to_the_first():
    scores = [
        pd.DataFrame({"perturbation": ["p", "q"], "pearson_delta_matched": v})
        for v in ([0.1, 0.3], [0.4, 0.2], [0.3, 0.3])
    ]
    records = [trial_record(k, {"lr": k}, s) for k, s in enumerate(scores)]
    best, table = choose(records, "pearson_delta_matched")
    assert best["trial"] == 1 and best["score"] == pytest.approx(0.3) and best["n_validation_perturbations"] == 2
    assert table["chosen"].tolist() == [False, True, False]
    best, _ = choose([{**records[2], "trial": 3}, records[2]], "pearson_delta_matched")  # a tie: the earlier trial
    assert best["trial"] == 2
    with pytest.raises(InputDataError, match="search.metric 'pearson_delta' is not among the trials' scores"):
        choose(records, "pearson_delta")


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_config) -> Path:
    """The tiny workflow with a search, a fully fine-tuned stage and the two extras, run to the end."""
    config = copy.deepcopy(tiny_config)
    # every stage once, the floor alone, one ceiling split: the search's rows are what is tested here
    config |= {"replicates": 1, "baselines": ["baseline_plate_control"]}
    config["evaluation"] = {**config["evaluation"], "ceiling_splits": 1}
    config["preprocess"]["split"]["val_fraction"] = 0.3
    config["stages"]["full"] = {"extends": "lora_random", "pairing": "batch", "adaptation": "full"}
    config["stages"]["extras"] = {
        "extends": "lora_random",
        "pairing": "batch",
        "dose_interpolation": {"points": 1},
        "loss": {"diversity": 1.0},
    }
    config["search"] = SEARCH
    workdir = tmp_path_factory.mktemp("search")
    write_config(workdir, config)
    done = snakemake(workdir)
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir


def _records(workdir: Path) -> tuple[list[dict], dict]:
    search = workdir / "results" / "tiny" / "search"
    return (
        [json.loads((search / "trials" / f"trial{k}.json").read_text()) for k in range(TRIALS)],
        json.loads((search / "chosen.json").read_text()),
    )


def test_a_search_never_reads_the_test_perturbations(searched, tmp_path):
    """Every test cell's counts in the raw screen replaced by noise before preprocessing: the same
    genes are chosen, and the trials score and choose the same."""
    poisoned = tmp_path / "poisoned"
    shutil.copytree(searched, poisoned, ignore=shutil.ignore_patterns(".snakemake"))
    data = poisoned / "results" / "tiny" / "data"
    screen = ad.read_h5ad(data / "screen.h5ad")
    split = pd.read_csv(data / "split.tsv", sep="\t")
    config = yaml.safe_load((searched / "config.yaml").read_text())
    test = (
        screen.obs["drugname_drugconc"].astype(str).isin(split.loc[split["split"] == "test", "perturbation"])
        & (screen.obs["cell_line"] == config["data"]["target_cell_line"])
    ).to_numpy()
    assert test.sum() > 0 and split["split"].eq("val").any()
    X = screen.X.toarray()
    X[test] = np.random.default_rng(0).poisson(
        np.random.default_rng(1).uniform(0, 200, X.shape[1]), (test.sum(), X.shape[1])
    )
    screen.X = sp.csr_matrix(X.astype(np.float32))
    write_h5ad(screen, data / "screen.h5ad")
    shutil.rmtree(poisoned / "results" / "tiny" / "search")
    done = snakemake(poisoned, "--until", "choose")
    assert done.returncode == 0, done.stderr[-4000:]
    log = done.stdout + done.stderr
    assert "rule preprocess" in log and "rule trial" in log, "preprocessing and the trials ran again"
    genes = [
        ad.read_h5ad(run / "results" / "tiny" / "data" / "target_line.h5ad", backed="r").var_names
        for run in (searched, poisoned)
    ]
    assert list(genes[0]) == list(genes[1])
    clean, chosen = _records(searched)
    dirty, dirty_chosen = _records(poisoned)
    assert dirty == clean and dirty_chosen == chosen


# What a search key reruns (dry runs over the finished search): the trials keep every searchable
# score, so the metric reruns only the choice and the winner's stage; the seed draws other trials.
TUNED_AND_REPORT = {"finetune": 1, "infer": 1, "evaluate": 1, "report": 1}
SEARCH_CASES = {
    "search.metric": ("pearson_delta", {"choose": 1, **TUNED_AND_REPORT}),
    "search.seed": (1, {"trial": TRIALS, "choose": 1, **TUNED_AND_REPORT}),
}


@pytest.mark.parametrize("path", SEARCH_CASES)
def test_a_changed_search_key_reruns_exactly_the_rules_that_read_it(searched, path):
    config = yaml.safe_load((searched / "config.yaml").read_text())
    value, expected = SEARCH_CASES[path]
    assert dry_run_jobs(searched, with_key(config, path, value)) == expected


def test_the_winner_trains_as_tuned_beside_the_fixed_stages(searched):
    report = searched / "results" / "tiny" / "report"
    summary = pd.read_csv(report / "summary.csv").set_index("stage")
    assert {"lora_random", "full", "extras", "tuned"} <= set(summary.index)
    _, chosen = _records(searched)
    assert json.loads(summary.loc["tuned", "chosen_setting"]) == chosen["overrides"]
    tuned = json.loads((searched / "results" / "tiny" / "models" / "tuned" / "rep0" / "summary.json").read_text())
    assert (
        tuned["settings"]["lr"] == chosen["overrides"]["lr"]
        and tuned["settings"]["lora"]["rank"] == chosen["overrides"]["lora.rank"]
    )
    record = json.loads((report / "provenance.json").read_text())
    assert record["search"]["chosen"]["overrides"] == chosen["overrides"] and len(record["search"]["trials"]) == TRIALS
    provenance_tuned = record["search"]["tuned"]  # the settings tuned trained with, not its start's
    assert (
        provenance_tuned["lr"] == chosen["overrides"]["lr"]
        and provenance_tuned["lora"]["rank"] == chosen["overrides"]["lora.rank"]
    )
    assert (report / "figures" / "search_scores.png").exists() and "Hyper-parameter search" in (
        report / "report.html"
    ).read_text()
    full = json.loads((searched / "results" / "tiny" / "models" / "full" / "rep0" / "summary.json").read_text())
    extras = json.loads((searched / "results" / "tiny" / "models" / "extras" / "rep0" / "summary.json").read_text())
    assert full["parameters"]["trainable"] == full["parameters"]["total"]
    assert extras["parameters"]["interpolated_cells"] > 0 and "diversity" in extras["final_loss"]
