"""``config/README.md``: every workflow config key with its default, generated so it cannot drift.

The keys, their allowed values and their descriptions come from the workflow's schema; the
defaults come from the settings dataclasses that read each section (the same objects every step
is given), or from the schema where no dataclass reads the key. ``tests/test_settings.py``
regenerates the page and compares it with the committed one::

    python -m deltatune.settings.reference workflow/schemas/config.schema.yaml > config/README.md
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from . import (
    Architecture,
    BootstrapSettings,
    CheckpointSettings,
    Columns,
    ComputeSettings,
    ContainerSettings,
    EvaluateSettings,
    InferenceSettings,
    LoraSettings,
    LossWeights,
    PerturbationSettings,
    PreprocessSettings,
    ScreenSpec,
    SplitSettings,
    StageSettings,
)
from .search import SearchSettings
from .train import DoseInterpolation, TrainSettings

STAGE = "stages.<name>"
# The dataclasses that read each config section, by its path: their defaults are the defaults.
SECTIONS: dict[str, tuple[type, ...]] = {
    "data.columns": (Columns,),
    "data.simulate": (ScreenSpec,),
    "preprocess": (PreprocessSettings,),
    "preprocess.split": (SplitSettings,),
    "base_model": (CheckpointSettings, PerturbationSettings),
    "base_model.architecture": (Architecture,),
    "base_model.pretrain": (TrainSettings,),
    STAGE: (StageSettings,),
    f"{STAGE}.loss": (LossWeights,),
    f"{STAGE}.lora": (LoraSettings,),
    f"{STAGE}.dose_interpolation": (DoseInterpolation,),
    "base_model.pretrain.loss": (LossWeights,),
    "search": (SearchSettings,),
    "inference": (InferenceSettings,),
    "evaluation": (EvaluateSettings,),
    "report.bootstrap": (BootstrapSettings,),
    "compute": (ComputeSettings,),
    "container": (ContainerSettings,),
}
HEADER = """# Configuration keys

Generated from `workflow/schemas/config.schema.yaml` and the settings dataclasses of
`src/deltatune/settings/` by `python -m deltatune.settings.reference` (`make config-docs`); a
test fails when this page and the settings differ. Do not edit by hand.

A config file given with `--configfile` is laid over `config/config.yaml` (the embedded
default) key by key: a key you leave out keeps that file's value, and a key neither file sets
takes the default below, filled in by the library. Every section rejects unknown keys: a
misspelled one stops the run naming its path. The effective settings of a run, every default
filled in, are in `results/<run>/report/provenance.json` (`config`), which can be given back as
`--configfile` (with `--replace-workflow-config` if the run used it: otherwise the demo's stages
are laid under it); `snakemake effective_config --configfile my.yaml` prints them before a run (and
keeps them in `results/<run>/effective_config.yaml`).
"""


def _resolve(node: dict, defs: dict) -> dict:
    """A schema node with ``$ref`` and ``allOf`` folded in (their properties merged)."""
    parts = [node, *node.get("allOf", [])]
    merged: dict = {}
    for part in parts:
        if "$ref" in part:
            part = {**_resolve(defs[part["$ref"].rsplit("/", 1)[-1]], defs), **part}
        merged = {**part, **merged, "properties": {**part.get("properties", {}), **merged.get("properties", {})}}
    return merged


def _default(path: str, key: str, prop: dict, required: list[str]) -> str:
    """The default of a key: its dataclass field's, else the schema's; "required" when it must be given."""
    if key in required:
        return "required"
    for cls in SECTIONS.get(path, ()):
        found = {f.name: f for f in dataclasses.fields(cls)}.get(key)
        if found is not None and found.default is not dataclasses.MISSING:
            return f"`{json.dumps(found.default)}`"
        if found is not None:  # a default_factory: a mapping, or a nested section (its own table)
            value = found.default_factory()
            return "" if dataclasses.is_dataclass(value) else f"`{json.dumps(value)}`"
    return f"`{json.dumps(prop['default'])}`" if "default" in prop else ""


def _allowed(prop: dict) -> str:
    enum = prop.get("enum") or prop.get("items", {}).get("enum") or prop.get("propertyNames", {}).get("enum")
    if enum:
        return " / ".join(f"`{json.dumps(v)}`" for v in enum)
    kinds = prop.get("type", "object" if "properties" in prop else "")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
    bounds = [f"{word} {prop[k]}" for k, word in words if k in prop]
    return ", ".join([" or ".join(str(k) for k in kinds if k), *bounds])


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _is_section(prop: dict) -> bool:
    kinds = prop.get("type", "object")
    return bool(prop.get("properties")) and "object" in (kinds if isinstance(kinds, list) else [kinds])


def _rows(path: str, node: dict, defs: dict, sections: list[tuple[str, list[str]]]) -> None:
    """Append ``(section path, table rows)`` for ``node`` and, depth first, its sub-sections."""
    node = _resolve(node, defs)
    required = node.get("required", [])
    rows, nested = [], []
    for key, prop in node.get("properties", {}).items():
        prop = _resolve(prop, defs)
        child = f"{path}.{key}" if path else key
        if key == "stages" and not path:
            nested.append((STAGE, _resolve(prop["additionalProperties"], defs)))
            allowed, default = "a stage per name, in report order", "required"
        elif _is_section(prop):
            nested.append((child, prop))
            allowed, default = f"section `{child}`", "required" if key in required else ""
        else:
            allowed, default = _cell(_allowed(prop)), _default(path, key, prop, required)
        rows.append(f"| `{key}` | {allowed} | {default} | {_cell(prop.get('description', ''))} |")
    sections.append((path, rows))
    for child, prop in nested:
        _rows(child, prop, defs, sections)


def markdown(schema: dict) -> str:
    """The page: one table per config section, in the schema's order."""
    sections: list[tuple[str, list[str]]] = []
    _rows("", schema, schema.get("$defs", {}), sections)
    out = [HEADER]
    for path, rows in sections:
        if not rows:
            continue
        title = f"## `{path}`" if path else "## Top level"
        out += [title, "", "| key | allowed | default | meaning |", "|---|---|---|---|", *rows, ""]
    return "\n".join(out)


if __name__ == "__main__":
    import yaml

    sys.stdout.write(markdown(yaml.safe_load(Path(sys.argv[1]).read_text())))
