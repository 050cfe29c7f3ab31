import json
import os

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
CHECKPOINT = config["base_model"].get("checkpoint")  # a user's ST run directory, or None: pretrain one


def check_pairings():
    """Stop before any job when a pairing needs the batch column and the data has none."""
    pairings = {f"stages.{n}": s["pairing"] for n, s in STAGES.items()}
    if not CHECKPOINT:
        pairings["base_model.pretrain"] = config["base_model"]["pretrain"]["pairing"]
    if not config["data"]["columns"].get("batch"):
        needs_batch = sorted(k for k, v in pairings.items() if v.startswith("batch"))
        if needs_batch:
            raise ValueError(
                f"{', '.join(needs_batch)} pair controls by batch, but data.columns.batch is null: "
                "name the plate / batch column (public benchmark files often have `dataset`), "
                "or set their pairing to celltype or random"
            )


check_pairings()
ALL_STAGES = [BASE_STAGE] + list(STAGES)
BASELINES = list(config["baselines"])
SCORED = ALL_STAGES + BASELINES
CEILING = "ceiling"
REPORTED = SCORED + [CEILING]
REPLICATES = config["replicates"]


wildcard_constraints:
    rep=r"\d+",
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
    return CHECKPOINT or f"{RESULTS}/models/base"


CHECKPOINT_KEYS = ("checkpoint_file", "genes", "trusted")


def checkpoint_settings():
    """How to load the user's checkpoint (deltatune.checkpoint.CheckpointSettings); defaults for our own."""
    if not CHECKPOINT:
        return as_json({})
    model = config["base_model"]
    return as_json({k: model[k] for k in CHECKPOINT_KEYS if model.get(k) is not None})


def perturbation_settings():
    """Matching data labels to the base vocabulary (deltatune.perturbations.PerturbationSettings)."""
    return as_json(
        {
            "unseen_perturbations": config["base_model"].get("unseen_perturbations", "error"),
            "combination_separator": config["data"].get("combination_separator"),
        }
    )


def get_model_genes():
    """A checkpoint's gene list, which replaces HVG selection; nothing when pretraining our own."""
    return f"{RESULTS}/data/model_genes.txt" if CHECKPOINT else []


def get_checkpoint_inputs(wildcards):
    """The user's checkpoint and, if given, its gene list file."""
    genes = config["base_model"].get("genes")
    return {"base": get_base_model(), **({"genes": genes} if genes else {})}


def replicates_of(scored):
    """Replicates of a stage; a baseline is deterministic and has one; the ceiling has its splits."""
    if scored == CEILING:
        return list(range(config["evaluation"]["ceiling_splits"]))
    return [0] if scored in BASELINES else list(range(REPLICATES))


def stage_dir(stage, rep):
    return f"{RESULTS}/models/{stage}/rep{rep}"


def get_adapter(wildcards):
    """A stage replicate's fine-tuned adapter directory; the base stage has none."""
    if wildcards.stage == BASE_STAGE:
        return []
    return stage_dir(wildcards.stage, wildcards.rep)


def stage_settings(wildcards):
    """A stage's resolved settings, its seed offset by the replicate number."""
    stage = STAGES[wildcards.trained_stage]
    return as_json({**stage, "seed": stage.get("seed", 0) + int(wildcards.rep)})


def inference_settings(wildcards):
    """Inference settings, the seed offset by the replicate number."""
    return as_json({**config["inference"], "seed": config["inference"]["seed"] + int(wildcards.rep)})


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
    data = config["data"]
    return {"target_cell_line": data["target_cell_line"], "var_names": data.get("var_names"), **config["preprocess"]}


def metrics_of(scored):
    return [f"{RESULTS}/metrics/{scored}/rep{rep}.tsv" for rep in replicates_of(scored)]


def get_report_inputs(wildcards):
    """Every score, every stage replicate, replicate 0's predictions, the data and the inputs."""
    return {
        "metrics": [path for scored in REPORTED for path in metrics_of(scored)],
        "stages": [stage_dir(stage, rep) for stage in STAGES for rep in range(REPLICATES)],
        "predictions": [f"{RESULTS}/predictions/{scored}/rep0.h5ad" for scored in SCORED],
        "matching": [f"{RESULTS}/metrics/{scored}/rep0.matching.json" for scored in SCORED],
        "data": f"{RESULTS}/data/target_line.h5ad",
        "split": f"{RESULTS}/data/split.tsv",
        "screen": get_screen(),
        "base": get_base_model(),
    }


def report_manifest(wildcards, input):
    """The report's inputs by role (deltatune.make_report.Manifest), as JSON in workflow order."""
    metrics = iter(input.metrics)
    stages = iter(input.stages)
    return json.dumps(
        {
            "metrics": {s: [next(metrics) for _ in replicates_of(s)] for s in REPORTED},
            "stages": {s: [next(stages) for _ in range(REPLICATES)] for s in STAGES},
            "predictions": dict(zip(SCORED, input.predictions, strict=True)),
            "matching": dict(zip(SCORED, input.matching, strict=True)),
            "data": input.data,
            "split": input.split,
            "inputs": [input.screen, input.base],
            "benchmarks": f"{RESULTS}/benchmarks",
            "repo": workflow.basedir,
            "container_image": container_image(),
        },
        separators=(",", ":"),
    )


def container_image():
    """The pinned image when jobs run in Apptainer (--sdm apptainer), else None."""
    methods = {str(m).lower() for m in workflow.deployment_settings.deployment_method}
    return pinned_image("workflow") if "apptainer" in methods else None


def get_final_output():
    return [f"{RESULTS}/report/{name}" for name in ("summary.csv", "report.html", "provenance.json")]


def pinned_image(name):
    """An image of containers/images.lock as a docker:// URL with its digest: a tag can move, a digest cannot."""
    import yaml

    with open(os.path.join(workflow.basedir, "containers", "images.lock")) as handle:
        return f"docker://{yaml.safe_load(handle)[name]}"


def gpus():
    """GPUs a training or inference job asks for: one, none when compute.accelerator forces the CPU."""
    return 0 if config["compute"]["accelerator"] == "cpu" else 1
