"""Each rule is given only the obs columns it reads (the others as null), so that renaming a column
reruns only the rules that read it. Here every step runs twice with all the columns named: on the
data as it is, and with every column its rule is not given replaced by random labels. A step that
read such a column would compute something else, whatever the data's structure (one cell line in
the target, one plate per test perturbation); the last test shows that scrambling a column a step
does read changes its result."""

from __future__ import annotations

from dataclasses import fields, replace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from deltatune.evaluate.pairs import evaluation_pair, real_test_cells
from deltatune.evaluate.reference import training_reference
from deltatune.evaluate.scores import ceiling_scores, score_prediction
from deltatune.pairing.index import build_pairing_index
from deltatune.predict.baselines import BASELINES, predict_baseline
from deltatune.predict.infer import predict
from deltatune.settings import Columns, EvaluateSettings, LossWeights, StageSettings, from_mapping
from deltatune.settings.pairing import STRATEGIES
from deltatune.settings.train import DoseInterpolation
from deltatune.settings.workflow import WorkflowSettings
from deltatune.train.finetune import finetune_stage
from deltatune.train.loop import Trainer
from deltatune.train.pretrain import pretrain_base

FAST = EvaluateSettings(profile="anndata", ceiling_splits=1)
OPTIONAL = [f.name for f in fields(Columns) if f.name not in ("perturbation", "control")]


@pytest.fixture(scope="module")
def workflow(tiny_config) -> WorkflowSettings:
    return WorkflowSettings(tiny_config)


def _unread(columns: Columns, given: dict) -> list[str]:
    """The obs columns named in ``columns`` that a rule given ``given`` (its params) does not read."""
    rule = from_mapping(Columns, given, "data.columns")
    return [getattr(columns, f) for f in OPTIONAL if getattr(columns, f) and getattr(rule, f) is None]


def _scrambled(adata: ad.AnnData, names: list[str], seed: int = 0) -> ad.AnnData:
    """A copy of ``adata`` whose obs ``names`` hold random labels (random numbers for a numeric column)."""
    out, rng = adata.copy(), np.random.default_rng(seed)
    for name in names:
        numeric = pd.api.types.is_numeric_dtype(out.obs[name])
        out.obs[name] = rng.uniform(0, 10, out.n_obs) if numeric else rng.choice(["x", "y", "z"], out.n_obs)
    return out


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pairing(workflow, preprocessed, columns, strategy):
    base = preprocessed.base
    unread = _unread(columns, workflow.pair_columns(strategy))
    full = build_pairing_index(base.obs, columns, strategy)
    scrambled = build_pairing_index(_scrambled(base, unread).obs, columns, strategy)
    assert scrambled.keys.equals(full.keys) and np.array_equal(scrambled.perturbed_group, full.perturbed_group)


def test_preprocessing(workflow, screen, columns):
    from deltatune.data.preprocess import preprocess

    unread = _unread(columns, workflow.columns_for("preprocess"))
    full = preprocess(screen.copy(), columns, workflow.preprocess)
    scrambled = preprocess(_scrambled(screen, unread), columns, workflow.preprocess)
    assert scrambled.split.equals(full.split) and scrambled.summary == full.summary
    for part in ("base", "target"):
        a, b = getattr(full, part), getattr(scrambled, part)
        assert (a.X != b.X).nnz == 0 and a.var.equals(b.var)
        assert a.obs.drop(columns=unread).equals(b.obs.drop(columns=unread)), part


def test_pretraining(workflow, preprocessed, columns, tmp_path):
    settings = replace(workflow.pretrain, epochs=1)
    base = preprocessed.base
    index = build_pairing_index(base.obs, columns, settings.pairing)  # the pair rule's
    unread = _unread(columns, workflow.columns_for("pretrain", stage=settings))

    def train(data: ad.AnnData, name: str) -> list[torch.Tensor]:
        model, _ = pretrain_base(data, columns, workflow.architecture, settings, Trainer(tmp_path / name, "fp"), index)
        return _weights(model.model)

    full, scrambled = train(base, "full"), train(_scrambled(base, unread), "scrambled")
    assert all(torch.equal(a, b) for a, b in zip(full, scrambled, strict=True))


@pytest.mark.parametrize(
    "settings",
    [
        StageSettings(pairing="batch", epochs=1, batch_size=16),
        StageSettings(pairing="batch", epochs=1, batch_size=16, loss=LossWeights(diversity=1.0)),
        StageSettings(pairing="batch", epochs=1, batch_size=16, dose_interpolation=DoseInterpolation(points=1)),
    ],
    ids=["plain", "diversity reward (reads the drug)", "dose interpolation (reads drug and dose)"],
)
def test_fine_tuning(workflow, new_base, preprocessed, columns, tmp_path, settings):
    target, split = preprocessed.target, preprocessed.split
    index = build_pairing_index(target.obs, columns, settings.pairing)  # the pair rule's
    unread = _unread(columns, workflow.columns_for("finetune", settings))

    def train(data: ad.AnnData, name: str):
        result = finetune_stage(new_base(), data, split, columns, settings, Trainer(tmp_path / name, "fp"), index)
        return result.history, _weights(result.model)

    (full_history, full), (history, scrambled) = train(target, "full"), train(_scrambled(target, unread), "scrambled")
    pd.testing.assert_frame_equal(history, full_history)
    assert all(torch.equal(a, b) for a, b in zip(full, scrambled, strict=True))


def test_inference(workflow, new_base, preprocessed, columns):
    # every perturbation predicted: some are on two plates, which the cell sets must not mix
    target, split, base = preprocessed.target, preprocessed.split.assign(split="test"), new_base()
    plates = build_pairing_index(target.obs, columns, "batch").with_means(target.X)  # the pair rule's
    unread = _unread(columns, workflow.columns_for("infer"))

    def infer(data: ad.AnnData) -> np.ndarray:
        return predict(base.model, base, data, split, columns, plates).X

    assert np.array_equal(infer(target), infer(_scrambled(target, unread)))


@pytest.mark.parametrize("kind", list(BASELINES))
def test_baselines(workflow, preprocessed, columns, kind):
    target, split, other = preprocessed.target, preprocessed.split, preprocessed.base
    plates = build_pairing_index(target.obs, columns, "batch").with_means(target.X)  # the pair rules'
    lines = build_pairing_index(other.obs, columns, "batch_celltype").with_means(other.X)
    unread = _unread(columns, workflow.baseline_columns(kind))

    def baseline(data: ad.AnnData, other_lines: ad.AnnData) -> np.ndarray:
        return predict_baseline(kind, data, split, columns, plates, other_lines, lines).X

    assert np.array_equal(baseline(target, other), baseline(_scrambled(target, unread), _scrambled(other, unread)))


def _prediction(preprocessed, columns) -> ad.AnnData:
    target, split = preprocessed.target, preprocessed.split
    plates = build_pairing_index(target.obs, columns, "batch").with_means(target.X)
    return predict_baseline("baseline_mean_delta", target, split, columns, plates)


def _scores(target: ad.AnnData, prediction: ad.AnnData, split: pd.DataFrame, columns: Columns):
    """The reference rule's pooled reference, the evaluate rule's scores and the ceiling rule's."""
    pair = evaluation_pair(target, prediction, split, columns)
    reference = training_reference(target, split, columns, pair.var_names)
    evaluated, _ = score_prediction(pair, reference, FAST, threads=1)
    ceiling = ceiling_scores(real_test_cells(target, split, columns), reference, columns, FAST, threads=1, seed=0)
    return reference.pooled, evaluated, ceiling


def test_scoring(workflow, preprocessed, columns):
    """The reference, the evaluation and the ceiling, whose rules are given the same columns."""
    target, split = preprocessed.target, preprocessed.split
    prediction = _prediction(preprocessed, columns)
    unread = _unread(columns, workflow.columns_for("evaluate"))
    assert all(_unread(columns, workflow.columns_for(rule)) == unread for rule in ("reference", "ceiling"))
    full = _scores(target, prediction, split, columns)
    scrambled = _scores(_scrambled(target, unread), _scrambled(prediction, unread, seed=1), split, columns)
    assert np.array_equal(full[0], scrambled[0])
    pd.testing.assert_frame_equal(full[1], scrambled[1])
    pd.testing.assert_frame_equal(full[2], scrambled[2])


def test_a_scrambled_column_that_is_read_changes_the_scores(preprocessed, columns):
    """The check has teeth: scrambling the plate column, which scoring reads, changes the scores."""
    target, split = preprocessed.target, preprocessed.split
    prediction = _prediction(preprocessed, columns)
    plates = [columns.batch]
    full = _scores(target, prediction, split, columns)[1]
    scrambled = _scores(_scrambled(target, plates), _scrambled(prediction, plates, seed=1), split, columns)[1]
    assert not full.equals(scrambled)
