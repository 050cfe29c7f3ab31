"""deltatune: LoRA fine-tuning of State Transition perturbation models, scored on the delta.

The library behind the workflow, usable without Snakemake: one function per workflow step, files
in and files out, each taking its settings as objects (the rule of the same name calls it
through the ``deltatune`` command), and :func:`scorecard` for scoring any prediction the way
the workflow scores its stages::

    from deltatune import Columns, scorecard

    card = scorecard("state_prediction.h5ad", real="c37.h5ad", split="split.tsv", columns=Columns())
    card.summary[["stage", "pearson_delta_matched", "pearson_delta_matched_ci_low"]]

Importing is light: the settings classes load with the standard library, and each step's
module (torch for training and inference, cell-eval for scoring) loads when first used.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from .errors import CheckpointError, DeltatuneError, InputDataError, OutputError, SettingsError
from .settings import (
    Architecture,
    BootstrapSettings,
    CheckpointSettings,
    Columns,
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
)

try:
    __version__ = version("deltatune")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# Each step's entry point, in workflow order, and the module that holds it (imported on first use).
_STEPS = {
    "simulate_file": "deltatune.data.steps",
    "simulate_plate_files": "deltatune.data.steps",
    "check_obs_file": "deltatune.data.steps",
    "genes_file": "deltatune.model.steps",
    "preprocess_files": "deltatune.data.steps",
    "pair_file": "deltatune.pairing.steps",
    "pretrain_files": "deltatune.train.steps",
    "finetune_files": "deltatune.train.steps",
    "trial_file": "deltatune.search.steps",
    "choose_files": "deltatune.search.steps",
    "infer_files": "deltatune.predict.steps",
    "baseline_file": "deltatune.predict.steps",
    "reference_file": "deltatune.evaluate.steps",
    "evaluate_files": "deltatune.evaluate.steps",
    "ceiling_file": "deltatune.evaluate.steps",
    "report_files": "deltatune.report.build",
    "compare_files": "deltatune.report.compare",
    "scorecard": "deltatune.report.scorecard",
    "Scorecard": "deltatune.report.scorecard",
    "Manifest": "deltatune.report.build",
}

__all__ = [
    *_STEPS,
    "Architecture",
    "BootstrapSettings",
    "CheckpointSettings",
    "Columns",
    "EvaluateSettings",
    "InferenceSettings",
    "LoraSettings",
    "LossWeights",
    "PerturbationSettings",
    "PreprocessSettings",
    "ScreenSpec",
    "SplitSettings",
    "StageSettings",
    "TrainSettings",
    "CheckpointError",
    "DeltatuneError",
    "InputDataError",
    "OutputError",
    "SettingsError",
]


def __getattr__(name: str):
    """A step's entry point, its module imported on first use (PEP 562)."""
    if name in _STEPS:
        return getattr(import_module(_STEPS[name]), name)
    raise AttributeError(f"module 'deltatune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_STEPS])
