import json
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The settings layer (deltatune.settings) imports only the standard library: reading it from the
# checkout lets a host that has Snakemake alone parse the workflow (jobs run in the container).
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from deltatune import resources, roles
from deltatune.files import sha256
from deltatune.model.release import recorded_split
from deltatune.settings import to_dict
from deltatune.settings.pairing import STRATEGIES, plate_strategy
from deltatune.settings.workflow import OTHER_LINES, WorkflowSettings

SCHEMA = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")


def validate_config(config):
    """Validate (and fill defaults) against the schema; a failure is one message that names the
    offending key's path first, instead of jsonschema's dump of the schema (up to 1,000 lines)."""
    try:
        validate(config, schema=SCHEMA)
    except WorkflowError as err:
        found = err.__context__  # jsonschema's ValidationError
        if not hasattr(found, "absolute_path"):
            raise
        where = ".".join(map(str, found.absolute_path)) or "the top level"
        raise WorkflowError(
            f"config error at {where}: {found.message} (allowed keys and values: workflow/schemas/config.schema.yaml)"
        ) from None


CONFIG_AS_WRITTEN = json.loads(json.dumps(config))  # before the schema fills in defaults
validate_config(config)

# Every setting resolved once; each rule's params come from it (and so does the report's record).
SETTINGS = WorkflowSettings(config)
RESULTS = f"results/{SETTINGS.run}"
INVOCATIONS = f"{RESULTS}/invocations.jsonl"  # every snakemake command that worked on the folder
STAGES = list(SETTINGS.stages)  # fine-tuned stages, `tuned` last when there is a search
SEARCH = SETTINGS.search
CHECKPOINT = SETTINGS.checkpoint_dir  # a user's ST run directory, or None: pretrain one
BASE_SPLIT = recorded_split(CHECKPOINT) if CHECKPOINT else None  # the split TOML the checkpoint trained with
BATCH = SETTINGS.columns.batch  # the plate / batch column, or None
ROLES = roles.row_roles(STAGES, SETTINGS.baselines)  # every report row, in report order, with its role
SCORED = [row for row, role in ROLES.items() if role != roles.CEILING]  # rows with a prediction
MODELS = [row for row, role in ROLES.items() if role in (roles.BASE, roles.STAGE)]  # rows inferred by ST
REPLICATES = SETTINGS.replicates


wildcard_constraints:
    rep=r"\d+",
    stage="|".join(MODELS),
    scored="|".join(SCORED),
    baseline="|".join(SETTINGS.baselines) if SETTINGS.baselines else "(?!)",
    dataset="base_lines|target_line",
    strategy="|".join(STRATEGIES),
    trained_stage="|".join(STAGES),
    trial=r"\d+",


def as_json(value, sort_keys=True):
    """A setting as compact JSON: the form rules pass to the deltatune CLI through params.
    ``sort_keys=False`` where order is meaning: a config's stages are the report's rows."""
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"))


def get_screen():
    """The raw screen's files: the user's (data.path, globs expanded), or the simulated default
    (one file, or one per plate in Tahoe's layout: data.simulate.plate_files)."""
    if SETTINGS.screen_files:
        return SETTINGS.screen_files
    if SETTINGS.screen.plate_files:
        return [f"{RESULTS}/data/screen/plate{p}.h5ad" for p in range(1, SETTINGS.screen.plate_files + 1)]
    return [f"{RESULTS}/data/screen.h5ad"]


def get_base_model():
    """The base ST run directory: the configured checkpoint, or the one the pretrain rule writes."""
    return CHECKPOINT or f"{RESULTS}/models/base"


def get_model_genes():
    """A checkpoint's gene list, which replaces HVG selection; nothing when pretraining our own."""
    return f"{RESULTS}/data/model_genes.txt" if CHECKPOINT else []


def get_checkpoint_inputs(wildcards):
    """The user's checkpoint and, if given, its gene list file."""
    genes = SETTINGS.checkpoint.genes
    return {"base": get_base_model(), **({"genes": genes} if genes else {})}


def replicates_of(row):
    """Replicates of a report row: a baseline is deterministic and has one; the ceiling has its splits."""
    role = ROLES[row]
    if role == roles.CEILING:
        return list(range(SETTINGS.evaluation.ceiling_splits))
    return [0] if roles.is_baseline(role) else list(range(REPLICATES))


def stage_dir(stage, rep):
    return f"{RESULTS}/models/{stage}/rep{rep}"


def get_adapter(wildcards):
    """A stage replicate's fine-tuned adapter directory; the base model has none."""
    if ROLES[wildcards.stage] == roles.BASE:
        return []
    return stage_dir(wildcards.stage, wildcards.rep)


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
    return pairing_index("target_line", SETTINGS.stages[wildcards.trained_stage].pairing)


def get_inference_pairing():
    """Control means for inference: per plate, or one global mean when there is no plate column."""
    return pairing_index("target_line", plate_strategy(BATCH))


def get_baseline_inputs(wildcards):
    """A baseline's inputs: the other-lines baseline also needs the base lines and their index."""
    inputs = {"pairing": get_inference_pairing()}
    if wildcards.baseline == OTHER_LINES:
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
        "obs_check": f"{RESULTS}/data/obs_check.json",
        "preprocess": f"{RESULTS}/data/preprocess.json",
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
            "parents": SETTINGS.parents,
            "metrics": {row: [next(metrics) for _ in replicates_of(row)] for row in ROLES},
            "stages": {s: [next(stages) for _ in range(REPLICATES)] for s in STAGES},
            "predictions": dict(zip(SCORED, input.predictions, strict=True)),
            "matching": dict(zip(SCORED, input.matching, strict=True)),
            "data": input.data,
            "split": input.split,
            "obs_check": input.obs_check,
            "preprocess": input.preprocess,
            # the screen's files are recorded (size, sha256), not inputs: the report reads none of
            # them, and their size (Tahoe: 314 GB) would set its memory and time (resources.py)
            "inputs": [*get_screen(), input.base],
            "benchmarks": f"{RESULTS}/benchmarks",
            "repo": workflow.basedir,
            "container_image": RUN_IMAGE,
            "search": {"trials": input.search_table, "chosen": input.search_chosen} if SEARCH else None,
            "base": input.base,
            "invocations": INVOCATIONS,
        },
        separators=(",", ":"),
    )


def runs_in_apptainer():
    """Whether jobs run in the image (--sdm apptainer)."""
    return "apptainer" in {str(m).lower() for m in workflow.deployment_settings.deployment_method}


def locked_images():
    """containers/images.lock's images as docker:// URLs with their digests: a tag can move, a digest cannot."""
    import yaml

    with open(os.path.join(workflow.basedir, "containers", "images.lock")) as handle:
        return {name: f"docker://{reference}" for name, reference in yaml.safe_load(handle).items()}


def workflow_image(in_apptainer):
    """The image of every job under --sdm apptainer, container.image or else images.lock's
    `workflow`. With --sdm apptainer (``in_apptainer``), stops before any job where that is the
    bare CUDA base (images.lock's `workflow` equal to its `base`: no deltatune inside, the first
    job would fail) or a local image file that is not there."""
    configured, locked = SETTINGS.container.uri(os.getcwd()), locked_images()
    if in_apptainer and configured is None and locked["workflow"] == locked["base"]:
        raise WorkflowError(
            "--sdm apptainer: containers/images.lock's `workflow` image is the bare CUDA base, without deltatune; "
            "build an image with `make image` and set container.image in your config to what it prints "
            '(containers/README.md, "Using it")'
        )
    if in_apptainer and SETTINGS.container.is_file and not os.path.isfile(configured):
        raise WorkflowError(f"container.image: {configured} does not exist")
    return configured or locked["workflow"]


WORKFLOW_IMAGE = workflow_image(runs_in_apptainer())  # resolved once, at parse
# The image jobs run in, None without --sdm apptainer: the report never names an image no rule ran in.
RUN_IMAGE = WORKFLOW_IMAGE if runs_in_apptainer() else None


def get_final_output():
    return [f"{RESULTS}/report/{name}" for name in ("summary.csv", "report.html", "provenance.json")]


# Run-only settings reach the rules as threads and resources, which rerun nothing when changed
# (deltatune.settings.workflow); every setting that shapes an output is a param.


def gpus():
    """GPUs a training or inference job asks for: one, none when compute.accelerator forces the CPU."""
    return 0 if SETTINGS.compute.accelerator == "cpu" else 1


def accelerator():
    """The device a training or inference job runs on (compute.accelerator), as a resource."""
    return SETTINGS.compute.accelerator


def mem_mb(rule_name):
    """A rule's memory: grows with its inputs' size and with each retry (deltatune.resources)."""
    return lambda wildcards, input, attempt: resources.mem_mb(rule_name, input.size_mb, attempt)


def runtime(rule_name, hashed=()):
    """A rule's time limit in minutes, likewise; ``hashed``: files it reads whole to hash them
    without taking them as inputs (the report: the screen), sized when the job is scheduled."""

    def minutes(wildcards, input, attempt):
        hashed_mb = sum(os.path.getsize(f) for f in hashed if os.path.exists(f)) / 2**20
        return resources.runtime(rule_name, input.size_mb, attempt, hashed_mb)

    return minutes


def _options(argv, name):
    """Every value of a command-line option given as `--name value` or `--name=value`."""
    found = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]
    return found + [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{name}=")]


def image_record():
    """The image this command's jobs run in, with the sha256 of a local image file (hashed once
    per command, not per job); None without --sdm apptainer."""
    if RUN_IMAGE is None:
        return None
    return {"image": RUN_IMAGE, "sha256": sha256(RUN_IMAGE) if SETTINGS.container.is_file else None}


def record_invocation():
    """Append this snakemake command to results/<run>/invocations.jsonl: when, what, where and
    with which profiles and executor, so that the results folder says how it was made (the
    report copies the list into provenance.json). Written by the main process before the first
    job; dry runs and jobs record nothing."""
    from datetime import datetime, timezone
    from importlib.metadata import version

    argv = list(sys.argv)
    default = os.path.join(workflow.basedir, "profiles", "default")
    plugin = workflow.executor_plugin
    entry = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(argv),
        "cwd": os.getcwd(),
        # profiles as given (Snakemake keeps no record of them); executor and deployment as resolved
        "profiles": _options(argv, "--profile") or [p for p in [os.environ.get("SNAKEMAKE_PROFILE")] if p],
        "workflow_profile": next(iter(_options(argv, "--workflow-profile")), default if os.path.isdir(default) else None),
        "executor": plugin.cli_prefix if plugin is not None else "local",
        "software_deployment": sorted(str(m) for m in workflow.deployment_settings.deployment_method),
        "container": image_record(),
        "snakemake": version("snakemake"),
        "config_as_written": CONFIG_AS_WRITTEN,  # config files and --config merged, no defaults filled in
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(INVOCATIONS, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
