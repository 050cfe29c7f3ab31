"""Each rule is given only the obs columns it reads (the others as null), so that renaming a column
reruns only the rules that read it. Here every step computes the same with the columns its rule is
given as with all of them: a step that read a column its rule is not given would differ."""

from __future__ import annotations

from dataclasses import replace

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


@pytest.fixture(scope="module")
def workflow(tiny_config) -> WorkflowSettings:
    return WorkflowSettings(tiny_config)


def _given(columns: dict) -> Columns:
    """The columns a rule's command builds from its params."""
    return from_mapping(Columns, columns, "data.columns")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pairing(workflow, preprocessed, columns, strategy):
    obs = preprocessed.base.obs
    full = build_pairing_index(obs, columns, strategy)
    given = build_pairing_index(obs, _given(workflow.pair_columns(strategy)), strategy)
    assert given.keys.equals(full.keys) and np.array_equal(given.perturbed_group, full.perturbed_group)


def test_preprocessing(workflow, screen, columns):
    from deltatune.data.preprocess import preprocess

    full = preprocess(screen.copy(), columns, workflow.preprocess)
    given = preprocess(screen.copy(), _given(workflow.columns_for("preprocess")), workflow.preprocess)
    assert given.split.equals(full.split) and (given.target.X != full.target.X).nnz == 0


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


def test_pretraining(workflow, preprocessed, columns, tmp_path):
    settings = replace(workflow.pretrain, epochs=1)
    base = preprocessed.base

    def train(given: Columns):
        index = build_pairing_index(base.obs, given, settings.pairing)
        model, _ = pretrain_base(base, given, workflow.architecture, settings, Trainer(tmp_path / str(id(given)), "fp"),
                                 index)  # fmt: skip
        return _weights(model.model)

    full, given = train(columns), train(_given(workflow.columns_for("pretrain", stage=settings)))
    assert all(torch.equal(a, b) for a, b in zip(full, given, strict=True))


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

    def train(given: Columns):
        index = build_pairing_index(target.obs, given, settings.pairing)
        result = finetune_stage(new_base(), target, split, given, settings, Trainer(tmp_path / str(id(given)), "fp"),
                                index)  # fmt: skip
        return result.history, _weights(result.model)

    (full_history, full), (history, given) = train(columns), train(_given(workflow.columns_for("finetune", settings)))
    pd.testing.assert_frame_equal(history, full_history)
    assert all(torch.equal(a, b) for a, b in zip(full, given, strict=True))


def test_inference(workflow, new_base, preprocessed, columns):
    target, split, base = preprocessed.target, preprocessed.split, new_base()

    def infer(given: Columns) -> np.ndarray:
        plates = build_pairing_index(target.obs, given, "batch").with_means(target.X)
        return predict(base.model, base, target, split, given, plates).X

    assert np.array_equal(infer(columns), infer(_given(workflow.columns_for("infer"))))


@pytest.mark.parametrize("kind", list(BASELINES))
def test_baselines(workflow, preprocessed, columns, kind):
    target, split, other = preprocessed.target, preprocessed.split, preprocessed.base

    def baseline(given: Columns) -> np.ndarray:
        plates = build_pairing_index(target.obs, columns, "batch").with_means(target.X)  # the pair rule's
        lines = build_pairing_index(other.obs, columns, "batch_celltype").with_means(other.X)
        return predict_baseline(kind, target, split, given, plates, other, lines).X

    assert np.array_equal(baseline(columns), baseline(_given(workflow.baseline_columns(kind))))


def test_scoring(workflow, preprocessed, columns):
    """The reference, the evaluation and the ceiling."""
    target, split = preprocessed.target, preprocessed.split
    prediction = predict_baseline("baseline_mean_delta", target, split, columns,
                                  build_pairing_index(target.obs, columns, "batch").with_means(target.X))  # fmt: skip

    def scores(reference_columns: Columns, evaluate_columns: Columns, ceiling_columns: Columns):
        pair = evaluation_pair(target, prediction, split, evaluate_columns)
        reference = training_reference(target, split, reference_columns, pair.var_names)
        evaluated, _ = score_prediction(pair, reference, FAST, threads=1)
        ceiling = ceiling_scores(real_test_cells(target, split, ceiling_columns), reference, ceiling_columns, FAST,
                                 threads=1, seed=0)  # fmt: skip
        return reference.pooled, evaluated, ceiling

    full = scores(columns, columns, columns)
    given = scores(*(_given(workflow.columns_for(rule)) for rule in ("reference", "evaluate", "ceiling")))
    assert np.array_equal(full[0], given[0])
    pd.testing.assert_frame_equal(full[1], given[1])
    pd.testing.assert_frame_equal(full[2], given[2])


def test_a_missing_column_would_be_caught(preprocessed, columns):
    """The check has teeth: scoring without the plate column gives other scores (no plate-matched ones)."""
    target, split = preprocessed.target, preprocessed.split
    prediction = predict_baseline("baseline_mean_delta", target, split, columns,
                                  build_pairing_index(target.obs, columns, "batch").with_means(target.X))  # fmt: skip

    def evaluated(given: Columns) -> pd.DataFrame:
        pair = evaluation_pair(target, prediction, split, given)
        return score_prediction(pair, training_reference(target, split, given, pair.var_names), FAST, threads=1)[0]

    assert not evaluated(columns).equals(evaluated(replace(columns, batch=None)))
