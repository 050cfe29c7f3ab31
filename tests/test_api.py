"""The public library: light to import, and the examples of docs/python.md, run on the
tiny config's finished run and checked against what the workflow computed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import REPO

import deltatune
from deltatune import EvaluateSettings, InputDataError, SettingsError, scorecard


def _python_blocks(results: Path) -> list[str]:
    """The Python examples of docs/python.md, reading the finished run in ``results`` instead of
    the demo's results folder (what they write goes to the working directory)."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "python.md").read_text(), re.S)
    assert len(blocks) == 2 and all("results/demo" in block for block in blocks), "the examples changed"
    return [block.replace("results/demo", str(results)) for block in blocks]


def test_importing_every_public_name_loads_no_torch():
    code = (
        "import sys, deltatune; [getattr(deltatune, name) for name in deltatune.__all__]; "
        "print(sorted(m for m in ('torch', 'lightning', 'peft', 'state') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert set(deltatune.__all__) <= set(dir(deltatune))
    with pytest.raises(AttributeError, match="no attribute 'finetune'"):
        deltatune.finetune  # noqa: B018 (the attribute access is the test)


def test_the_python_example_trains_and_predicts_a_stage_of_its_own(finished_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    training = _python_blocks(finished_run / "results" / "tiny")[0]
    assert "epochs=50" in training
    exec(compile(training.replace("epochs=50", "epochs=2"), "docs/python.md", "exec"), {})  # the tiny run's length
    assert (tmp_path / "my_stage" / "adapter" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "my_stage.checkpoints").exists()
    mine = ad.read_h5ad(tmp_path / "my_prediction.h5ad")
    workflows = ad.read_h5ad(finished_run / "results" / "tiny" / "predictions" / "base" / "rep0.h5ad")
    assert sorted(mine.obs_names) == sorted(workflows.obs_names)
    assert not np.allclose(mine[workflows.obs_names].X, workflows.X), "the stage changed the predictions"


@pytest.fixture(scope="module")
def card(finished_run):
    """docs/python.md's scorecard of the tiny run's untuned base model."""
    namespace = {}
    exec(compile(_python_blocks(finished_run / "results" / "tiny")[1], "docs/python.md", "exec"), namespace)
    return namespace["card"]


def _workflow_scores(finished_run, row: str, rep: int) -> pd.DataFrame:
    return pd.read_csv(finished_run / "results" / "tiny" / "metrics" / row / f"rep{rep}.tsv", sep="\t")


def _card_scores(card, row: str, rep: int) -> pd.DataFrame:
    scores = card.comparison[(card.comparison["stage"] == row) & (card.comparison["replicate"] == rep)]
    return scores.pivot(index="perturbation", columns="metric", values="value")


@pytest.mark.parametrize(
    ("card_row", "workflow_row", "rep"),
    [
        ("prediction", "base", 0),
        ("baseline_plate_control", "baseline_plate_control", 0),
        *[("ceiling", "ceiling", k) for k in range(3)],
    ],
)
def test_the_scorecard_gives_the_workflows_scores(card, finished_run, card_row, workflow_row, rep):
    ours = _card_scores(card, card_row, rep)
    theirs = _workflow_scores(finished_run, workflow_row, rep).set_index("perturbation").sort_index()
    theirs = theirs.apply(pd.to_numeric, errors="coerce").dropna(axis=1, how="all")
    assert sorted(ours.columns) == sorted(theirs.columns)
    assert np.allclose(ours[theirs.columns].loc[theirs.index], theirs, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_the_scorecard_summary_has_floor_ceiling_and_bound(card):
    summary = card.summary.set_index("stage")
    assert summary.index.tolist() == ["prediction", "baseline_plate_control", "ceiling", "noise_free_bound"]
    position = summary["pearson_delta_matched_floor_to_bound"]
    assert position["baseline_plate_control"] == 0 and position["noise_free_bound"] == 1
    assert 0 < card.matching["batches"]


def test_someone_elses_prediction_is_scored_against_the_real_controls(card, finished_run, tmp_path):
    """Rows in another order, an extra gene, the model's own (wrong) control cells and a cell the
    real data does not have: the same scores; a missing test cell is named."""
    results = finished_run / "results" / "tiny"
    ours = ad.read_h5ad(results / "predictions" / "base" / "rep0.h5ad")
    controls = ~ours.obs["predicted"].to_numpy()
    X = ours.X.copy()
    X[controls] += 3.0  # what a model predicts for controls is never what they are
    extra = ad.AnnData(
        X=np.ones((1, ours.n_vars), dtype=np.float32), obs=ours.obs.iloc[:1].set_axis(["virtual"]), var=ours.var
    )
    theirs = ad.concat([ad.AnnData(X=X, obs=ours.obs, var=ours.var), extra])
    theirs = theirs[np.random.default_rng(0).permutation(theirs.n_obs)].copy()
    theirs = ad.concat(
        [
            theirs,
            ad.AnnData(
                X=np.zeros((theirs.n_obs, 1), dtype=np.float32), obs=theirs.obs, var=pd.DataFrame(index=["extra_gene"])
            ),
        ],
        axis=1,
        merge="first",
    )
    theirs = theirs[:, ::-1].copy()
    again = scorecard(
        theirs,
        results / "data" / "target_line.h5ad",
        results / "data" / "split.tsv",
        evaluation=EvaluateSettings(ceiling_splits=1),
    )
    assert np.allclose(
        _card_scores(again, "prediction", 0), _card_scores(card, "prediction", 0), rtol=1e-9, equal_nan=True
    )
    missing = theirs[theirs.obs_names != theirs.obs_names[theirs.obs["predicted"].to_numpy()][0]].copy()
    with pytest.raises(InputDataError, match="the prediction lacks 1 cell"):
        scorecard(missing, results / "data" / "target_line.h5ad", results / "data" / "split.tsv")


def test_a_prediction_that_cannot_be_scored_is_named(finished_run):
    """Repeated cell names, a missing measured gene, a name the scorecard uses for a row of its own:
    one message each, before anything is computed."""
    results = finished_run / "results" / "tiny"
    data, split = results / "data" / "target_line.h5ad", results / "data" / "split.tsv"
    ours = ad.read_h5ad(results / "predictions" / "base" / "rep0.h5ad")
    repeated = ad.concat([ours, ours[:1]])
    with pytest.raises(InputDataError, match="the prediction's cell names are not unique"):
        scorecard(repeated, data, split)
    with pytest.raises(InputDataError, match="the prediction lacks 1 gene"):
        scorecard(ours[:, 1:].copy(), data, split)
    with pytest.raises(SettingsError, match="name 'ceiling' is a row of the scorecard already"):
        scorecard(ours, data, split, name="ceiling")
