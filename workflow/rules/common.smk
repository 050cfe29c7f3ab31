import json

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

RUN = config["run"]
RESULTS = f"results/{RUN}"
BASE_STAGE = "base"


def as_json(value):
    """A setting as compact JSON: the form rules pass to the deltatune CLI through params."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def resolve_stages(stages):
    """Each stage's settings with `extends` chains merged in (a stage overrides its parent)."""

    def resolve(name, seen):
        if name in seen:
            raise ValueError(f"stages: 'extends' cycle through {' -> '.join(seen + [name])}")
        stage = dict(stages[name])
        parent = stage.pop("extends", None)
        if parent is None:
            return stage
        if parent not in stages:
            raise ValueError(f"stages.{name}.extends: unknown stage '{parent}'")
        return deep_merge(resolve(parent, seen + [name]), stage)

    return {name: resolve(name, []) for name in stages}


def deep_merge(base, override):
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


STAGES = resolve_stages(config["stages"])
if BASE_STAGE in STAGES:
    raise ValueError(f"stages: '{BASE_STAGE}' is reserved for the untuned base model")
for _name, _stage in STAGES.items():
    if "pairing" not in _stage:
        raise ValueError(f"stages.{_name}: set 'pairing' (random, batch, celltype or batch_celltype)")
ALL_STAGES = [BASE_STAGE] + list(STAGES)
BASELINES = ["baseline_mean_delta", "baseline_other_lines"]
SCORED = ALL_STAGES + BASELINES


wildcard_constraints:
    stage="|".join(ALL_STAGES),
    scored="|".join(SCORED),
    baseline="|".join(BASELINES),
    dataset="base_lines|target_line",
    strategy="random|batch|celltype|batch_celltype",
    trained_stage="|".join(STAGES) if STAGES else "(?!)",


def columns_json():
    return as_json(config["data"]["columns"])


def get_screen():
    """The raw screen: the user's file, or the simulated embedded default."""
    return config["data"].get("path") or f"{RESULTS}/data/screen.h5ad"


def get_base_model():
    """The base ST run directory: the configured checkpoint, or the one pretrain_base writes."""
    return config["base_model"].get("checkpoint") or f"{RESULTS}/models/base"


def get_adapter(wildcards):
    """A stage's fine-tuned adapter directory; the base stage has none."""
    if wildcards.stage == BASE_STAGE:
        return []
    return f"{RESULTS}/models/{wildcards.stage}"


def pairing_index(dataset, strategy):
    return f"{RESULTS}/pairing/{dataset}_{strategy}.npz"


def get_stage_pairing(wildcards):
    """The target line's pairing index for the strategy of a fine-tuning stage."""
    return pairing_index("target_line", STAGES[wildcards.trained_stage]["pairing"])


def get_inference_pairing():
    """Control means for inference: per plate, or one global mean when there is no plate column."""
    return pairing_index("target_line", "batch" if config["data"]["columns"].get("batch") else "random")


def get_baseline_inputs(wildcards):
    """A baseline's inputs: the other-lines baseline also needs the base lines and their index."""
    inputs = {"pairing": get_inference_pairing()}
    if wildcards.baseline == "baseline_other_lines":
        inputs["base_data"] = f"{RESULTS}/data/base_lines.h5ad"
        inputs["base_pairing"] = pairing_index("base_lines", "batch_celltype" if config["data"]["columns"].get("batch") else "celltype")
    return inputs


def preprocess_settings():
    return {"target_cell_line": config["data"]["target_cell_line"], **config["preprocess"]}


def get_final_output():
    return [f"{RESULTS}/report/summary.csv", f"{RESULTS}/report/report.md"]
