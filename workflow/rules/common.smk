import json
import os
import sys

from snakemake.utils import validate

# The settings layer (deltatune.settings) imports only the standard library: reading it from the
# checkout lets a host that has Snakemake alone parse the workflow (jobs run in the container).
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from deltatune import resources, roles
from deltatune.settings import workflow as step_settings
from deltatune.settings.pairing import STRATEGIES
from deltatune.settings.search import trials as search_trials


validate(config, schema="../schemas/config.schema.yaml")

RUN = config["run"]
RESULTS = f"results/{RUN}"
FIXED_STAGES = step_settings.resolve_stages(config["stages"])
SEARCH = step_settings.search_settings(config, FIXED_STAGES)
STAGES = step_settings.with_tuned(FIXED_STAGES, SEARCH)
TRIAL_VALUES = search_trials(SEARCH) if SEARCH else []  # each search trial's searched values
TRIALS = step_settings.trial_settings(STAGES, SEARCH, TRIAL_VALUES) if SEARCH else []  # and its stage settings
CHECKPOINT = config["base_model"].get("checkpoint")  # a user's ST run directory, or None: pretrain one
BATCH = config["data"]["columns"].get("batch")  # the plate / batch column, or None
BASELINES = list(config["baselines"])
ROLES = roles.row_roles(list(STAGES), BASELINES)  # every report row, in report order, with its role
PARENTS = step_settings.stage_parents(config["stages"], SEARCH)  # the row each stage is tested against
SCORED = [row for row, role in ROLES.items() if role != roles.CEILING]  # rows with a prediction
MODELS = [row for row, role in ROLES.items() if role in (roles.BASE, roles.STAGE)]  # rows inferred by ST
REPLICATES = config["replicates"]


def check_pairings():
    """Stop before any job when a pairing needs the batch column and the data has none."""
    pairings = {f"stages.{n}": s["pairing"] for n, s in STAGES.items()}
    if not CHECKPOINT:
        pairings["base_model.pretrain"] = config["base_model"]["pretrain"]["pairing"]
    needs_batch = sorted(k for k, v in pairings.items() if v.startswith("batch"))
    if needs_batch and not BATCH:
        raise ValueError(
            f"{', '.join(needs_batch)} pair controls by batch, but data.columns.batch is null: "
            "name the plate / batch column (public benchmark files often have `dataset`), "
            "or set their pairing to celltype or random"
        )


check_pairings()


wildcard_constraints:
    rep=r"\d+",
    stage="|".join(MODELS),
    scored="|".join(SCORED),
    baseline="|".join(BASELINES) if BASELINES else "(?!)",
    dataset="base_lines|target_line",
    strategy="|".join(STRATEGIES),
    trained_stage="|".join(STAGES),
    trial=r"\d+",


def as_json(value):
    """A setting as compact JSON: the form rules pass to the deltatune CLI through params."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def columns_json():
    return as_json(config["data"]["columns"])


def get_screen():
    """The raw screen: the user's file, or the simulated embedded default."""
    return config["data"].get("path") or f"{RESULTS}/data/screen.h5ad"


def get_base_model():
    """The base ST run directory: the configured checkpoint, or the one the pretrain rule writes."""
    return CHECKPOINT or f"{RESULTS}/models/base"


def checkpoint_settings():
    """How to load the user's checkpoint (CheckpointSettings); defaults for our own."""
    return as_json(step_settings.checkpoint_settings(config))


def perturbation_settings():
    """Matching data labels to the base vocabulary (PerturbationSettings)."""
    return as_json(step_settings.perturbation_settings(config))


def preprocess_settings():
    return as_json(step_settings.preprocess_settings(config))


def get_model_genes():
    """A checkpoint's gene list, which replaces HVG selection; nothing when pretraining our own."""
    return f"{RESULTS}/data/model_genes.txt" if CHECKPOINT else []


def get_checkpoint_inputs(wildcards):
    """The user's checkpoint and, if given, its gene list file."""
    genes = config["base_model"].get("genes")
    return {"base": get_base_model(), **({"genes": genes} if genes else {})}


def replicates_of(row):
    """Replicates of a report row: a baseline is deterministic and has one; the ceiling has its splits."""
    role = ROLES[row]
    if role == roles.CEILING:
        return list(range(config["evaluation"]["ceiling_splits"]))
    return [0] if roles.is_baseline(role) else list(range(REPLICATES))


def stage_dir(stage, rep):
    return f"{RESULTS}/models/{stage}/rep{rep}"


def get_adapter(wildcards):
    """A stage replicate's fine-tuned adapter directory; the base model has none."""
    if ROLES[wildcards.stage] == roles.BASE:
        return []
    return stage_dir(wildcards.stage, wildcards.rep)


def stage_settings(wildcards):
    """A stage's resolved settings for one replicate."""
    return as_json(step_settings.stage_settings(STAGES[wildcards.trained_stage], int(wildcards.rep)))


def inference_settings(wildcards):
    """Inference settings for one replicate."""
    return as_json(step_settings.inference_settings(config, int(wildcards.rep)))


def get_chosen(wildcards):
    """The search's chosen trial, which the ``tuned`` stage trains with; no other stage reads it."""
    return f"{RESULTS}/search/chosen.json" if SEARCH and wildcards.trained_stage == roles.TUNED_ROW else []


def search_outputs():
    """The search's records the report shows (none without a search)."""
    return {"search_table": f"{RESULTS}/search/trials.tsv", "search_chosen": f"{RESULTS}/search/chosen.json"} if SEARCH else {}


def pairing_index(dataset, strategy):
    return f"{RESULTS}/pairing/{dataset}_{strategy}.npz"


def get_stage_pairing(wildcards):
    """The target line's pairing index for the strategy of a fine-tuning stage."""
    return pairing_index("target_line", STAGES[wildcards.trained_stage]["pairing"])


def get_inference_pairing():
    """Control means for inference: per plate, or one global mean when there is no plate column."""
    return pairing_index("target_line", "batch" if BATCH else "random")


def get_baseline_inputs(wildcards):
    """A baseline's inputs: the other-lines baseline also needs the base lines and their index."""
    inputs = {"pairing": get_inference_pairing()}
    if wildcards.baseline == "baseline_other_lines":
        inputs["base_data"] = f"{RESULTS}/data/base_lines.h5ad"
        inputs["base_pairing"] = pairing_index("base_lines", "batch_celltype" if BATCH else "celltype")
    return inputs


def metrics_of(row):
    return [f"{RESULTS}/metrics/{row}/rep{rep}.tsv" for rep in replicates_of(row)]


def get_report_inputs(wildcards):
    """Every score, every stage replicate, replicate 0's predictions, the data and the inputs."""
    return {
        "metrics": [path for row in ROLES for path in metrics_of(row)],
        "stages": [stage_dir(stage, rep) for stage in STAGES for rep in range(REPLICATES)],
        "predictions": [f"{RESULTS}/predictions/{row}/rep0.h5ad" for row in SCORED],
        "matching": [f"{RESULTS}/metrics/{row}/rep0.matching.json" for row in SCORED],
        "data": f"{RESULTS}/data/target_line.h5ad",
        "split": f"{RESULTS}/data/split.tsv",
        "screen": get_screen(),
        "base": get_base_model(),
        **search_outputs(),
    }


def report_manifest(wildcards, input):
    """The report's inputs by role (deltatune.report.build.Manifest), as JSON in report order."""
    metrics = iter(input.metrics)
    stages = iter(input.stages)
    return json.dumps(
        {
            "roles": ROLES,
            "parents": PARENTS,
            "metrics": {row: [next(metrics) for _ in replicates_of(row)] for row in ROLES},
            "stages": {s: [next(stages) for _ in range(REPLICATES)] for s in STAGES},
            "predictions": dict(zip(SCORED, input.predictions, strict=True)),
            "matching": dict(zip(SCORED, input.matching, strict=True)),
            "data": input.data,
            "split": input.split,
            "inputs": [input.screen, input.base],
            "benchmarks": f"{RESULTS}/benchmarks",
            "repo": workflow.basedir,
            "container_image": container_image(),
            "search": {"trials": input.search_table, "chosen": input.search_chosen} if SEARCH else None,
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


def mem_mb(rule_name):
    """A rule's memory: grows with its inputs' size and with each retry (deltatune.resources)."""
    return lambda wildcards, input, attempt: resources.mem_mb(rule_name, input.size_mb, attempt)


def runtime(rule_name):
    """A rule's time limit in minutes, likewise."""
    return lambda wildcards, input, attempt: resources.runtime(rule_name, input.size_mb, attempt)
