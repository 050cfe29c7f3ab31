"""From the workflow's config to each step's settings, written once.

``workflow/rules/common.smk`` passes these mappings to the ``deltatune`` commands through
``params:``, and the report's provenance fills in every default from the same mappings, so the
two cannot disagree on which config key feeds which setting. Only the standard library is
imported: Snakemake reads this while it parses the workflow.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import SettingsError
from ..roles import BASE_ROW, TUNED_ROW
from .base import from_mapping, to_dict
from .compute import ComputeSettings
from .data import PreprocessSettings, ScreenSpec
from .evaluate import EvaluateSettings
from .model import Architecture, CheckpointSettings, PerturbationSettings
from .predict import InferenceSettings
from .report import BootstrapSettings
from .search import SearchSettings, with_overrides
from .train import StageSettings, TrainSettings

CHECKPOINT_KEYS = tuple(f.name for f in dataclasses.fields(CheckpointSettings))  # its base_model keys


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` laid over it, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_stages(stages: dict[str, dict]) -> dict[str, dict]:
    """Each stage's settings with its ``extends`` chain merged in (a stage overrides its parent)."""
    if BASE_ROW in stages:
        raise SettingsError(f"stages: '{BASE_ROW}' is reserved for the untuned base model")

    def resolve(name: str, seen: list[str]) -> dict:
        if name in seen:
            raise SettingsError(f"stages: 'extends' cycle through {' -> '.join(seen + [name])}")
        stage = dict(stages[name])
        parent = stage.pop("extends", None)
        if parent is None:
            return stage
        if parent not in stages:
            raise SettingsError(f"stages.{name}.extends: unknown stage '{parent}'")
        return deep_merge(resolve(parent, seen + [name]), stage)

    resolved = {name: resolve(name, []) for name in stages}
    for name, stage in resolved.items():
        if "pairing" not in stage:
            raise SettingsError(f"stages.{name}.pairing: set it (random, batch, celltype or batch_celltype)")
    return resolved


def search_settings(config: dict, stages: dict[str, dict]) -> SearchSettings | None:
    """The config's ``search`` (None without one); its start must be a stage, and ``tuned`` free."""
    if not config.get("search"):
        return None
    search = from_mapping(SearchSettings, config["search"], "search")
    if search.start not in stages:
        raise SettingsError(f"search.start: unknown stage '{search.start}' (stages: {sorted(stages)})")
    if TUNED_ROW in stages:
        raise SettingsError(f"stages: '{TUNED_ROW}' is reserved for the search's winner when the config has a search")
    for name, space in search.parameters.items():
        for value in space["values"] if "values" in space else (space["low"], space["high"]):
            _check_override(stages[search.start], search.start, name, value)
    return search


def _check_override(stage: dict, stage_name: str, name: str, value: Any) -> None:
    """``stage`` with the searched setting ``name`` at ``value`` must be valid stage settings: a
    misspelled path or a value of the wrong type stops the workflow while it is parsed, not
    inside every trial job."""
    try:
        from_mapping(StageSettings, with_overrides(stage, {name: value}), f"stages.{stage_name}")
    except SettingsError as err:
        raise SettingsError(f"search.parameters.{name}: {value!r} does not fit stage '{stage_name}': {err}") from None


def with_tuned(stages: dict[str, dict], search: SearchSettings | None) -> dict[str, dict]:
    """The stages, then ``tuned`` (the search's start stage; the chosen trial's values are laid over
    it when it trains) when there is a search."""
    return stages if search is None else {**stages, TUNED_ROW: stages[search.start]}


def stage_parents(stages: dict[str, dict], search: SearchSettings | None) -> dict[str, str]:
    """The row each stage is tested against: the stage it ``extends`` (``base`` for one that extends
    none); ``tuned`` against the search's start stage. ``stages`` as configured (not resolved)."""
    parents = {name: stage.get("extends") or BASE_ROW for name, stage in stages.items()}
    return parents if search is None else {**parents, TUNED_ROW: search.start}


def trial_settings(stages: dict[str, dict], search: SearchSettings, values: list[dict]) -> list[dict]:
    """Every trial's stage settings: the start stage (its first replicate's seed) with the trial's
    ``values`` (:func:`deltatune.settings.search.trials`)."""
    start = stage_settings(stages[search.start], 0)
    for trial in values:  # drawn from a range, a value can still be of the wrong type (a float rank)
        for name, value in trial.items():
            _check_override(start, search.start, name, value)
    return [with_overrides(start, trial) for trial in values]


def replicate_seed(seed: int, replicate: int) -> int:
    """The seed of replicate ``replicate`` of a step whose configured seed is ``seed``."""
    return seed + replicate


def stage_settings(stage: dict, replicate: int) -> dict:
    """A resolved stage's settings for one replicate (:class:`StageSettings` fields)."""
    return {**stage, "seed": replicate_seed(stage.get("seed", 0), replicate)}


def inference_settings(config: dict, replicate: int) -> dict:
    """Inference settings for one replicate (:class:`InferenceSettings` fields)."""
    inference = config["inference"]
    return {**inference, "seed": replicate_seed(inference["seed"], replicate)}


def preprocess_settings(config: dict) -> dict:
    """:class:`PreprocessSettings` fields: section ``preprocess`` plus two ``data`` keys."""
    data = config["data"]
    return {"target_cell_line": data["target_cell_line"], "var_names": data.get("var_names"), **config.get("preprocess", {})}


def checkpoint_settings(config: dict) -> dict:
    """:class:`CheckpointSettings` fields set in ``base_model``; none without a checkpoint."""
    model = config["base_model"]
    if not model.get("checkpoint"):
        return {}
    return {k: model[k] for k in CHECKPOINT_KEYS if model.get(k) is not None}


def perturbation_settings(config: dict) -> dict:
    """:class:`PerturbationSettings` fields, from ``base_model`` and ``data``."""
    return {
        "unseen_perturbations": config["base_model"].get("unseen_perturbations", "error"),
        "combination_separator": config["data"].get("combination_separator"),
    }


def effective_config(config: dict, stages: dict[str, dict]) -> dict:
    """``config`` with every section's defaults filled in; ``stages`` has ``extends`` resolved."""

    def effective(cls: type, values: Any, where: str) -> dict:
        return to_dict(from_mapping(cls, values, where))

    data, model = config["data"], config["base_model"]
    given = bool(model.get("checkpoint"))
    return {
        "run": config["run"],
        "replicates": config.get("replicates", 1),
        "data": {
            **data,
            "simulate": None if data.get("path") else effective(ScreenSpec, data.get("simulate"), "data.simulate"),
        },
        "preprocess": effective(PreprocessSettings, preprocess_settings(config), "preprocess"),
        "base_model": {
            "checkpoint": model.get("checkpoint"),
            **(effective(CheckpointSettings, checkpoint_settings(config), "base_model") if given else {}),
            **effective(PerturbationSettings, perturbation_settings(config), "base_model"),
            "architecture": None if given else effective(Architecture, model.get("architecture"), "base_model.architecture"),
            "pretrain": None if given else effective(TrainSettings, model.get("pretrain"), "base_model.pretrain"),
        },
        "stages": {name: effective(StageSettings, s, f"stages.{name}") for name, s in stages.items()},
        "inference": effective(InferenceSettings, config.get("inference"), "inference"),
        "evaluation": effective(EvaluateSettings, config.get("evaluation"), "evaluation"),
        "report": effective(BootstrapSettings, config.get("report", {}).get("bootstrap"), "report.bootstrap"),
        "compute": effective(ComputeSettings, config.get("compute"), "compute"),
        "search": effective(SearchSettings, config["search"], "search") if config.get("search") else None,
    }


def seeds(effective: dict) -> dict:
    """Every seed of a run (of :func:`effective_config`), replicate offsets applied."""
    reps = range(effective["replicates"])
    simulated = effective["data"]["simulate"]
    pretrain = effective["base_model"]["pretrain"]
    return {
        "simulate": simulated["seed"] if simulated else None,
        "split": effective["preprocess"]["split"]["seed"],
        "pretrain": pretrain["seed"] if pretrain else None,
        "stages": {name: [replicate_seed(s["seed"], r) for r in reps] for name, s in effective["stages"].items()},
        "inference": [replicate_seed(effective["inference"]["seed"], r) for r in reps],
        "bootstrap": effective["report"]["seed"],
    }
