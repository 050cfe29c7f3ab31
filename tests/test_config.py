"""The config schema, the library's settings dataclasses and the shipped configs agree."""

import dataclasses

import pytest
import yaml
from conftest import REPO, TINY_CONFIG
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from deltatune.settings import (
    Architecture,
    CheckpointSettings,
    Columns,
    EvaluateSettings,
    LoraSettings,
    LossWeights,
    PerturbationSettings,
    PreprocessSettings,
    ScreenSpec,
    SplitSettings,
    StageSettings,
    TrainSettings,
)
from deltatune.settings.workflow import WorkflowSettings

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
PROPS = SCHEMA["properties"]
DEFS = SCHEMA["$defs"]


def _fields(cls, drop=()):
    return {f.name for f in dataclasses.fields(cls)} - set(drop)


@pytest.mark.parametrize(
    ("section", "cls", "drop"),
    [
        (PROPS["data"]["properties"]["simulate"], ScreenSpec, ()),
        (PROPS["data"]["properties"]["columns"], Columns, ()),
        (PROPS["preprocess"], PreprocessSettings, ("target_cell_line", "var_names")),
        (PROPS["preprocess"]["properties"]["split"], SplitSettings, ()),
        (PROPS["base_model"]["properties"]["architecture"], Architecture, ()),
        (DEFS["training"], TrainSettings, ()),
        (DEFS["loss"], LossWeights, ()),
        (DEFS["lora"], LoraSettings, ()),
        (PROPS["evaluation"], EvaluateSettings, ()),
    ],
)
def test_schema_sections_list_exactly_the_dataclass_fields(section, cls, drop):
    assert set(section["properties"]) == _fields(cls, drop)


def test_base_model_and_data_sections_carry_the_matching_settings():
    """Checkpoint and perturbation settings live in base_model, the data format's keys in data."""
    data, model = PROPS["data"]["properties"], PROPS["base_model"]["properties"]
    assert _fields(CheckpointSettings) | {"unseen_perturbations", "checkpoint"} <= set(model)
    assert {"combination_separator", "var_names"} <= set(data)
    assert _fields(PerturbationSettings) == {"unseen_perturbations", "combination_separator"}


def test_stage_schema_adds_lora_and_extends_to_training():
    stage = PROPS["stages"]["additionalProperties"]
    assert set(stage["properties"]) | set(DEFS["training"]["properties"]) == _fields(StageSettings) | {"extends"}


DEFAULT_CONFIG = REPO / "config" / "config.yaml"


@pytest.mark.parametrize("path", [DEFAULT_CONFIG, TINY_CONFIG], ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    validate(yaml.safe_load(path.read_text()), str(SCHEMA_PATH))


SEARCH_CONFIG = REPO / "config" / "search.yaml"


def test_the_search_config_adds_its_rows_to_the_demo():
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    update_config(config, yaml.safe_load(SEARCH_CONFIG.read_text()))
    validate(config, str(SCHEMA_PATH))
    assert config["run"] == "search" and config["search"]["start"] in config["stages"]
    assert list(config["stages"]) == [
        "lora_random",
        "lora_batch",
        "lora_batch_delta",
        "lora_batch_delta_ext",
        "full_batch_delta",
        "lora_batch_delta_interp",
        "lora_batch_delta_diverse",
    ]


CAPACITY_CONFIGS = {REPO / "config" / "capacity.yaml", REPO / "config" / "capacity_large.yaml"}
DEMO_STAGES = ["lora_random", "lora_batch", "lora_batch_delta", "lora_batch_delta_ext"]


def _laid_over_the_demo(path) -> WorkflowSettings:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    update_config(config, yaml.safe_load(path.read_text()))
    validate(config, str(SCHEMA_PATH))
    return WorkflowSettings(config)


def test_the_capacity_ladder_changes_only_what_is_adapted():
    """Every rung after the demo's stages extends the delta-loss stage (or a rung of it) and
    differs from it in adaptation alone (and the learning rate of whole-weight training); the
    demo's own stages are exactly the demo's."""
    demo = _laid_over_the_demo(DEFAULT_CONFIG)
    capacity = _laid_over_the_demo(REPO / "config" / "capacity.yaml")
    assert capacity.run == "capacity" and capacity.replicates == 3
    assert list(capacity.stages)[:4] == DEMO_STAGES
    assert all(capacity.stages[s] == demo.stages[s] for s in DEMO_STAGES)
    start = capacity.stages["lora_batch_delta"]
    adapted = {"adaptation", "full_groups", "lora", "lr", "loss"}
    for name, stage in list(capacity.stages.items())[4:]:
        same = {f.name for f in dataclasses.fields(stage)} - adapted
        assert all(getattr(stage, f) == getattr(start, f) for f in same), name
        assert dataclasses.replace(stage.loss, plate_adversarial=0.0) == start.loss, name
        assert stage.lr == (3e-4 if stage.adaptation == "full" else start.lr), name
    stages = capacity.stages
    assert [stages[s].lora.rank for s in ("lora_r4_attn", "lora_batch_delta", "lora_r32_attn", "lora_r64_attn")] == [
        4, 8, 32, capacity.architecture.hidden_dim
    ]  # fmt: skip
    assert len(stages["lora_r32_all"].lora.targets) == 5 and stages["dora_r32_all"].lora.use_dora
    groups = [stages[f"full_{g}"].full_groups for g in ("pert_encoder", "basal_encoder", "backbone", "decoder")]
    assert groups == [("pert_encoder",), ("basal_encoder",), ("backbone",), ("decoder",)]
    assert stages["full_batch_delta_adv"].loss.plate_adversarial > 0 and stages["full_batch_delta"].full_groups == ()
    large = _laid_over_the_demo(REPO / "config" / "capacity_large.yaml")
    assert large.architecture.hidden_dim > capacity.architecture.hidden_dim
    assert large.architecture.n_layers > capacity.architecture.n_layers
    assert all(large.stages[s] == capacity.stages[s] for s in large.stages)


@pytest.mark.parametrize(
    "path",
    sorted(set((REPO / "config").glob("*.yaml")) - {DEFAULT_CONFIG, SEARCH_CONFIG, *CAPACITY_CONFIGS}),
    ids=lambda p: p.name,
)
def test_example_configs_are_valid_laid_over_the_default(path):
    """`--configfile example.yaml` from the repository merges it over config/config.yaml."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    update_config(config, yaml.safe_load(path.read_text()))
    validate(config, str(SCHEMA_PATH))
    assert config["data"]["path"] and config["base_model"]["checkpoint"]
    assert list(config["stages"]) == ["lora_random", "lora_batch", "lora_batch_delta", "lora_batch_delta_ext"]


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda c: c["stages"]["lora_random"].update(epoch=3), "'epoch' was unexpected"),
        (lambda c: c["stages"]["lora_random"]["lora"].update(ranks=3), "'ranks' was unexpected"),
        (lambda c: c["data"].update(colums={}), "'colums' was unexpected"),
        (lambda c: c["base_model"]["pretrain"].update(pairing="plate"), "'plate' is not one of"),
    ],
)
def test_misspelled_or_invalid_keys_are_named(tiny_config, mutate, named):
    config = yaml.safe_load(yaml.safe_dump(tiny_config))
    mutate(config)
    with pytest.raises(WorkflowError, match=named):
        validate(config, str(SCHEMA_PATH))


def test_defaults_are_filled_for_optional_sections(tiny_config):
    optional = ("compute", "evaluation", "inference", "replicates", "report", "baselines")
    config = {k: v for k, v in yaml.safe_load(yaml.safe_dump(tiny_config)).items() if k not in optional}
    validate(config, str(SCHEMA_PATH))
    assert config["compute"] == {"train_threads": 1, "eval_threads": 2, "accelerator": "auto"}
    assert config["evaluation"] == {
        "profile": "anndata",
        "ceiling_splits": 3,
        "cell_cap": 500,
        "control_cap": 5000,
        "seed": 0,
    }
    assert config["inference"] == {"mode": "control_mean", "seed": 0}
    assert config["replicates"] == 1
    assert config["baselines"] == ["baseline_mean_delta", "baseline_other_lines", "baseline_plate_control"]
    assert config["report"] == {"bootstrap": {"samples": 2000, "level": 0.95, "seed": 0}}
