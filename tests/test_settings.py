"""The settings layer: one source for allowed values and defaults, held against the schema.

The schema (workflow/schemas/config.schema.yaml) validates the config before any job; the
dataclasses of deltatune.settings validate what the library is given. These tests keep the two
from drifting apart, check that the layer imports no heavy library, and that every config path
an error message names exists.
"""

import ast
import dataclasses
import json
import re
import subprocess
import sys
import typing

import pytest
import yaml
from conftest import REPO

from deltatune.errors import SettingsError
from deltatune.settings import (
    Architecture,
    BootstrapSettings,
    CheckpointSettings,
    Columns,
    ComputeSettings,
    EvaluateSettings,
    InferenceSettings,
    LoraSettings,
    LossWeights,
    PerturbationSettings,
    PreprocessSettings,
    ScreenSpec,
    SplitSettings,
    StageSettings,
    TrainSettings,
    from_mapping,
)
from deltatune.settings.base import CHOICES, RANGE
from deltatune.settings.search import SearchSettings
from deltatune.settings.train import DoseInterpolation

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
PROPS, DEFS = SCHEMA["properties"], SCHEMA["$defs"]
STAGE = PROPS["stages"]["additionalProperties"]
# Every config section that a settings dataclass reads, by its config path.
SECTIONS = {
    "data.simulate": (PROPS["data"]["properties"]["simulate"], ScreenSpec),
    "data.columns": (PROPS["data"]["properties"]["columns"], Columns),
    "preprocess": (PROPS["preprocess"], PreprocessSettings),
    "preprocess.split": (PROPS["preprocess"]["properties"]["split"], SplitSettings),
    "base_model": (PROPS["base_model"], CheckpointSettings),
    "base_model (perturbations)": (PROPS["base_model"], PerturbationSettings),  # unseen_perturbations lives there
    "base_model.architecture": (PROPS["base_model"]["properties"]["architecture"], Architecture),
    "base_model.pretrain": (DEFS["training"], TrainSettings),
    "stages.lora_random": ({"properties": {**DEFS["training"]["properties"], **STAGE["properties"]}}, StageSettings),
    "stages.lora_random.loss": (DEFS["loss"], LossWeights),
    "stages.lora_random.lora": (DEFS["lora"], LoraSettings),
    "stages.lora_random.dose_interpolation": (STAGE["properties"]["dose_interpolation"], DoseInterpolation),
    "search": (PROPS["search"], SearchSettings),
    "inference": (PROPS["inference"], InferenceSettings),
    "evaluation": (PROPS["evaluation"], EvaluateSettings),
    "report.bootstrap": (PROPS["report"]["properties"]["bootstrap"], BootstrapSettings),
    "compute": (PROPS["compute"], ComputeSettings),
}


def _enum(prop: dict) -> list | None:
    """The allowed values a schema property lists (for arrays, those of its items; for mappings,
    of its keys)."""
    return prop.get("enum") or prop.get("items", {}).get("enum") or prop.get("propertyNames", {}).get("enum")


@pytest.mark.parametrize("path", SECTIONS)
def test_schema_enums_and_defaults_are_the_dataclasses(path):
    section, cls = SECTIONS[path]
    props = section["properties"]
    for f in dataclasses.fields(cls):
        if f.name not in props:
            continue  # keys of another section (target_cell_line lives in data)
        prop = props[f.name]
        choices = f.metadata.get(CHOICES)
        if (path, f.name) == ("search", "metric"):  # the catalogue's searchable scores, checked when parsed
            assert "enum" not in prop and "src/deltatune/metrics.py" in " ".join(prop["description"].split())
            continue
        assert (list(choices) if choices else None) == _enum(prop), f"{path}.{f.name}: allowed values differ"
        if "default" in prop:
            assert prop["default"] == f.default, f"{path}.{f.name}: defaults differ"
    for name, default in section.get("default", {}).items():
        assert getattr(cls(), name) == default, f"{path}: the section default of {name} differs"


def test_strategies_are_listed_once():
    from deltatune.settings.pairing import STRATEGIES

    assert DEFS["training"]["properties"]["pairing"]["enum"] == list(STRATEGIES)


def _schema_bounds(prop: dict) -> tuple[dict, dict]:
    """What a schema property bounds: numbers (its own, its items' or its values') and a list's length."""
    numbers = prop.get("items") or (
        prop["additionalProperties"] if isinstance(prop.get("additionalProperties"), dict) else prop
    )
    keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    return {k: numbers[k] for k in keys if k in numbers}, {k: prop[k] for k in ("minItems", "maxItems") if k in prop}


@pytest.mark.parametrize("path", SECTIONS)
def test_schema_ranges_are_the_dataclasses(path):
    """Every bound of the schema is a field's :func:`setting` range, and the other way round."""
    section, cls = SECTIONS[path]
    props = section["properties"]
    for f in dataclasses.fields(cls):
        if f.name not in props:
            continue
        limits = f.metadata.get(RANGE)
        declared = (limits.bounds(), limits.lengths()) if limits else ({}, {})
        schema = _schema_bounds(props[f.name])
        kind = typing.get_type_hints(cls)[f.name]
        if typing.get_origin(kind) is tuple and Ellipsis not in typing.get_args(kind):
            schema = (schema[0], {})  # a pair's length is its type's (from_mapping checks it)
        assert declared == schema, (
            f"{path}.{f.name}: the schema's bounds {schema} differ from the dataclass's {declared}"
        )


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (TrainSettings, {"lr": 0}, "lr must be above 0 (got 0)"),
        (PreprocessSettings, {"target_cell_line": "c", "n_top_genes": -5}, "n_top_genes must be at least 2 (got -5)"),
        (ScreenSpec, {"doses_um": [0.1, -1]}, "doses_um[1] must be above 0 (got -1)"),
        (ScreenSpec, {"cell_lines": ["a"]}, "cell_lines needs at least 2 item(s), got 1"),
        (LoraSettings, {"rank_scale": {"basal_encoder": 0}}, "rank_scale.basal_encoder must be above 0 (got 0)"),
        (BootstrapSettings, {"level": 1.0}, "level must be below 1 (got 1.0)"),
    ],
    ids=["number", "integer", "list item", "list length", "mapping value", "bootstrap"],
)
def test_a_value_out_of_range_names_its_setting_and_bound(cls, values, message):
    with pytest.raises(SettingsError, match=re.escape(f"section.{message}")):
        from_mapping(cls, values, "section")


@pytest.mark.parametrize(
    "path", [p for p in SECTIONS if any(f.metadata.get(CHOICES) for f in dataclasses.fields(SECTIONS[p][1]))]
)
def test_a_bad_choice_names_its_config_path(path):
    _, cls = SECTIONS[path]
    field = next(f for f in dataclasses.fields(cls) if f.metadata.get(CHOICES))
    bad = ("nonsense",) if isinstance(field.default, tuple) else "nonsense"
    required = {"target_cell_line": "c"} if cls is PreprocessSettings else {}
    with pytest.raises(SettingsError, match=rf"^{re.escape(path)}\.{field.name} 'nonsense' is not one of"):
        from_mapping(cls, {**required, field.name: bad}, path)


# A config path in a message: a top-level section, or a name a section is easily mistaken for, then
# keys; not a module path (deltatune.report.x) and not a file name (report.html).
CONFIG_PATH = re.compile(
    r"(?<![\w.])(?:data|preprocess|base_model|stages|inference|evaluation|report|compute|"
    r"replicates|baselines|model|evaluate|simulate|pretrain)(?:\.[A-Za-z_]\w*)+"
)
FILE_SUFFIXES = {"smk", "html", "json", "log", "tsv", "csv", "h5ad", "txt", "yaml", "npz", "png", "py"}


def _resolves(path: str) -> bool:
    """Whether a dotted config path names a key of the schema (stage names match any stage)."""
    node = SCHEMA
    for key in path.split("."):
        props = {**node.get("properties", {})}
        for part in node.get("allOf", []):
            ref = part.get("$ref", "")
            props |= DEFS[ref.rsplit("/", 1)[-1]]["properties"] if ref else part.get("properties", {})
        if "$ref" in node:
            props |= DEFS[node["$ref"].rsplit("/", 1)[-1]]["properties"]
        if key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]  # a stage name
        else:
            return False
    return True


def _messages() -> list[tuple[str, str]]:
    """Every error message of the library (the strings of its ``raise`` statements) and every
    line of the workflow's rules, with where it stands."""
    found = []
    for path in sorted((REPO / "src" / "deltatune").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                found += [
                    (f"{path.relative_to(REPO)}:{c.lineno}", c.value)
                    for c in ast.walk(node.exc)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                ]
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        found += [(f"{path.relative_to(REPO)}:{i}", line) for i, line in enumerate(path.read_text().splitlines(), 1)]
    return found


def test_every_config_path_named_in_the_code_exists():
    named = [
        (where, m)
        for where, text in _messages()
        for m in CONFIG_PATH.findall(text)
        if m.rsplit(".", 1)[-1] not in FILE_SUFFIXES
    ]
    assert len(named) > 10, "the scan found the library's config paths"
    unknown = [f"{where}: {path}" for where, path in named if not _resolves(path)]
    assert not unknown, "\n".join(unknown)


def test_the_scan_catches_a_wrong_path():
    assert _resolves("evaluation.profile") and _resolves("stages.any_stage.lora.rank_scale")
    assert not _resolves("evaluate.profile") and not _resolves("base_model.architecture.width")
    assert CONFIG_PATH.findall("see model.architecture, not deltatune.report.build") == ["model.architecture"]


def test_settings_import_no_heavy_library():
    """What the workflow's parser imports of deltatune (every module common.smk names) loads no
    heavy library: a host with Snakemake alone parses the workflow while jobs run in the image."""
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    modules = set()
    for package, names in re.findall(r"^from (deltatune[\w.]*) import (.+)$", common, re.M):
        is_package = package == "deltatune"  # from deltatune import resources, roles: modules
        modules |= {f"{package}.{n.strip()}" for n in names.split(",")} if is_package else {package}
    modules = sorted(modules)
    assert "deltatune.model.release" in modules and "deltatune.settings.workflow" in modules
    code = (
        f"import sys, {', '.join(modules)}; "
        "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'anndata', 'yaml', 'cell_load') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (ScreenSpec, {"doses_um": ["a"]}, "data.simulate.doses_um[0]: expected a number, got 'a'"),
        (ScreenSpec, {"plates_per_drug": [1]}, "data.simulate.plates_per_drug: expected a list of 2"),
        (ScreenSpec, {"plates_per_drug": [1, 2.5]}, "data.simulate.plates_per_drug[1]: expected an integer, got 2.5"),
        (LoraSettings, {"rank_scale": {"basal_encoder": "half"}}, "rank_scale.basal_encoder: expected a number"),
    ],
    ids=["tuple element", "tuple length", "pair element", "mapping value"],
)
def test_list_and_mapping_elements_are_type_checked(cls, values, message):
    where = "data.simulate" if cls is ScreenSpec else "stages.s.lora"
    with pytest.raises(SettingsError, match=re.escape(message)):
        from_mapping(cls, values, where)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"lora.rnak": {"values": [4]}},
            "search.parameters.lora.rnak: 4 does not fit stage 's': stages.s.lora: unknown",
        ),
        (
            {"lr": {"values": ["fast"]}},
            "search.parameters.lr: 'fast' does not fit stage 's': stages.s.lr: expected a number",
        ),
        (
            {"lora.rank": {"low": 2, "high": 8}},
            "search.parameters.lora.rank: 7.07 does not fit stage 's': stages.s.lora.rank: expected an integer",
        ),
        ({"lr.base": {"values": [1]}}, "search.parameters.lr.base: 1 does not fit stage 's'"),
        ({"lr": {"low": "small", "high": 1e-3}}, "search.parameters.lr: give 'values' (a list) or numbers"),
        ({"pairing": {"values": ["random", "batch"]}}, "search.parameters.pairing: the pairing strategy cannot be"),
    ],
    ids=[
        "misspelled path",
        "value of the wrong type",
        "a range over an integer setting",
        "a setting as a section",
        "a range of words",
        "the pairing, an input of the trial jobs",
    ],
)
def test_search_paths_and_values_are_checked_when_the_workflow_is_parsed(tiny_config, parameters, message):
    from deltatune.settings.workflow import WorkflowSettings

    stages = {"s": {"pairing": "batch", "lr": 1e-3, "lora": {"rank": 8}}}
    config = {**tiny_config, "stages": stages, "search": {"start": "s", "parameters": parameters}}
    with pytest.raises(SettingsError, match=re.escape(message)):
        WorkflowSettings(config)
    fine = WorkflowSettings({**config, "search": {"start": "s", "parameters": {"lora.rank": {"values": [2, 8]}}}})
    assert [t.lora.rank for t in fine.trials] and {t.lora.rank for t in fine.trials} <= {2, 8}


def test_the_search_chooses_among_the_catalogues_searchable_scores(tiny_config):
    from deltatune.metrics import SCORES
    from deltatune.settings.workflow import WorkflowSettings

    config = {**tiny_config, "search": {"start": "lora_random", "metric": "mode_collapse"}}
    searchable = tuple(s.name for s in SCORES if s.searchable)
    with pytest.raises(SettingsError, match=re.escape(f"search.metric 'mode_collapse' is not one of {searchable}")):
        WorkflowSettings(config)


def _own_data(config: dict) -> dict:
    """``config`` with a user's file and checkpoint instead of the simulated screen and our base."""
    data = {k: v for k, v in config["data"].items() if k != "simulate"}
    return {
        **config,
        "data": {**data, "path": "screen.h5ad"},
        "base_model": {"checkpoint": "models/ST-HVG", "genes": "genes.txt"},
    }


@pytest.mark.parametrize("own_data", [False, True], ids=["simulated screen, own base", "own data and checkpoint"])
def test_the_effective_config_is_a_config_the_workflow_accepts(tiny_config, own_data):
    """provenance.json's config can be given back as --configfile: it passes the schema and
    resolves to the same settings; every seed of the run is read off it."""
    from snakemake.utils import validate

    from deltatune.settings.workflow import WorkflowSettings, seeds

    config = {
        **tiny_config,
        "stages": {**tiny_config["stages"], "ext": {"extends": "lora_random", "pairing": "batch"}},
        "search": {"start": "lora_random", "trials": 2},
    }
    config = _own_data(config) if own_data else config
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    effective = WorkflowSettings(config).effective()
    again = json.loads(json.dumps(effective))
    validate(again, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert WorkflowSettings(again).effective() == effective
    assert "keep_cells" not in effective["preprocess"], "a key added later, unset: no report reruns for it"
    found = seeds(effective)
    assert found["stages"] == {"lora_random": [0, 1], "ext": [0, 1]} and found["split"] == 0
    assert (found["simulate"], found["pretrain"]) == ((None, None) if own_data else (1, 0))


def test_the_demo_stages_resolve_through_their_extends_chains():
    """Each stage starts from the one it extends, three levels deep, and is tested against it."""
    from deltatune.settings.workflow import WorkflowSettings

    demo = WorkflowSettings(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    ext = demo.stages["lora_batch_delta_ext"]
    assert (ext.pairing, ext.epochs, ext.lr, ext.control_input) == ("batch", 50, 1e-3, "cells")  # from lora_random
    assert (ext.loss.base, ext.loss.delta_mse, ext.loss.delta_pearson) == (1.0, 0.5, 0.3)  # from lora_batch_delta
    assert ext.lora.targets == ("backbone_attention", "pert_encoder", "basal_encoder") and ext.lora.rank == 8
    assert ext.lora.rank_scale == {"basal_encoder": 0.5} and ext.lora.alpha == 16
    assert demo.stages["lora_batch"].loss.delta_mse == 0.0, "a stage does not see what extends it"
    assert demo.parents == {"lora_random": "base", "lora_batch": "lora_random", "lora_batch_delta": "lora_batch",
                            "lora_batch_delta_ext": "lora_batch_delta"}  # fmt: skip


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ({"a": {"extends": "b", "pairing": "batch"}, "b": {"extends": "a"}}, "stages: 'extends' cycle through"),
        ({"a": {"extends": "z", "pairing": "batch"}}, "stages.a.extends: unknown stage 'z'"),
        ({"a": {"lr": 1e-3}}, "stages.a.pairing: set it"),
        ({"base": {"pairing": "batch"}}, "stages: 'base' is reserved for the untuned base model"),
    ],
    ids=["a cycle", "an unknown parent", "no pairing", "the base model's name"],
)
def test_a_stage_that_cannot_be_resolved_is_named(tiny_config, stages, message):
    from deltatune.settings.workflow import WorkflowSettings

    with pytest.raises(SettingsError, match=re.escape(message)):
        WorkflowSettings({**tiny_config, "stages": stages})


def test_the_search_winner_reads_what_any_trial_reads(tiny_config):
    """``tuned`` trains with values known only after the search: given the columns of every trial
    (a diversity reward reads the drug column), never only its start stage's."""
    from deltatune.settings.workflow import WorkflowSettings

    search = {"start": "lora_random", "method": "grid", "parameters": {"loss.diversity": {"values": [0.0, 1.0]}}}
    workflow = WorkflowSettings({**tiny_config, "search": search})
    assert workflow.stage_columns("lora_random")["drug"] is None
    assert [workflow.trial_columns(k)["drug"] for k in range(2)] == [None, "drug"]
    assert workflow.stage_columns("tuned")["drug"] == "drug"
    with pytest.raises(SettingsError, match="search.metric 'pearson_delta_matched' is scored against each plate"):
        no_plates = {**tiny_config["data"], "columns": {**tiny_config["data"]["columns"], "batch": None}}
        stages = {"lora_random": {**tiny_config["stages"]["lora_random"], "pairing": "random"}}
        pretrain = {**tiny_config["base_model"]["pretrain"], "pairing": "celltype"}
        WorkflowSettings({**tiny_config, "data": no_plates, "stages": stages, "search": search,
                          "base_model": {**tiny_config["base_model"], "pretrain": pretrain}})  # fmt: skip


def test_the_config_reference_page_is_generated_from_the_settings():
    """config/README.md lists every schema key with the dataclasses' defaults: regenerated, it is unchanged."""
    from deltatune.settings.reference import markdown

    page = (REPO / "config" / "README.md").read_text()
    assert page == markdown(SCHEMA), "config/README.md is stale: run `make config-docs`"
    for section, (_, cls) in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in section_props(section):
                assert f"| `{f.name}` |" in page, f"{section}.{f.name} is not listed"
    assert "| `test_fraction` | number, > 0, < 1 | `0.3` |" in page
    assert "| `lr` | number, > 0 | `0.0003` |" in page


def section_props(section: str) -> dict:
    return SECTIONS[section][0].get("properties", {})


def test_preprocessing_is_given_only_the_split_settings_it_reads(tiny_config):
    """A drawn split reads the fractions, a fixed one its lists: a config that names neither
    list gives preprocessing the same settings as before fixed splits existed (nothing reruns)."""
    from conftest import with_key

    from deltatune.settings.workflow import WorkflowSettings

    drawn = WorkflowSettings(tiny_config).preprocess_settings()["split"]
    assert set(drawn) == {"val_fraction", "test_fraction", "dose_holdout_fraction", "seed"}
    fixed = WorkflowSettings(with_key(tiny_config, "preprocess.split.test", ["drug01"])).preprocess_settings()
    assert fixed["split"] == {
        "seed": tiny_config["preprocess"]["split"]["seed"],
        "test": ["drug01"],
        "val": None,
        "toml": None,
    }
    assert from_mapping(PreprocessSettings, fixed, "preprocess").split.test == ("drug01",)


def test_a_dose_parsed_from_the_labels_reaches_preprocessing_and_the_rules_that_read_the_dose(tiny_config):
    from conftest import with_key

    from deltatune.settings.workflow import WorkflowSettings

    with pytest.raises(SettingsError, match="dose_from_label needs data.columns.dose"):
        from_mapping(Columns, {"dose": None, "dose_from_label": True}, "data.columns")
    config = with_key(with_key(tiny_config, "data.columns.dose", "dose_um"), "data.columns.dose_from_label", True)
    settings = WorkflowSettings(config)
    assert (
        settings.columns_for("preprocess")["dose"] == "dose_um"
        and settings.columns_for("preprocess")["dose_from_label"]
    )
    assert settings.columns_for("check_obs")["dose_from_label"], "the check does not look for the column it writes"
    evaluate = settings.columns_for("evaluate")
    assert evaluate["dose"] is None and evaluate["dose_from_label"] is False, "a rule that reads no dose gets none"


def _later_keys_at_old_values(record, path=()) -> list[str]:
    """Where in a rule's settings (nested dicts) a key of LATER_KEYS appears at its old value."""
    from deltatune.settings.workflow import LATER_KEYS

    found = []
    if isinstance(record, dict):
        for later, old in LATER_KEYS.items():
            node = record
            for key in later:
                node = node.get(key, dict) if isinstance(node, dict) else dict
            if node is not dict and node == old:
                found.append(".".join(path + later))
        for key, value in record.items():
            found += _later_keys_at_old_values(value, (*path, key))
    return found


def test_no_rule_and_no_record_carries_a_later_key_at_its_old_value(tiny_config):
    """Keys added after results existed, at the value that does what the code did before them,
    must be in no rule's params and not in provenance's config: else every existing folder reruns
    (the config written out, every key at its default, as Snakemake's schema fills it)."""
    from snakemake.utils import validate

    from deltatune.settings.workflow import WorkflowSettings

    config = {
        **tiny_config,
        "stages": {**tiny_config["stages"], "ext": {"extends": "lora_random", "pairing": "batch"}},
        "search": {"start": "lora_random", "trials": 1},
    }
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    settings = WorkflowSettings(config)
    records = {
        "preprocess": settings.preprocess_settings(),
        "check_obs": settings.check_obs_settings(),
        "pretrain": settings.pretrain_settings(),
        "trial": settings.trial_settings(0),
        "effective": settings.effective(),
        **{f"stages.{s}": settings.stage_settings(s, 0) for s in settings.stages},
    }
    assert {name: _later_keys_at_old_values(r) for name, r in records.items() if _later_keys_at_old_values(r)} == {}
    assert _later_keys_at_old_values({"loss": {"plate_adversarial": 0.0}}) == ["loss.plate_adversarial"]
