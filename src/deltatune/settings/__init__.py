"""Every setting of every step: frozen dataclasses and their allowed values, torch-free.

One module per workflow step (``data``, ``model``, ``train``, ``predict``, ``evaluate``,
``report``, ``compute``); :mod:`.workflow` maps the workflow's config onto them. Only the
standard library is imported here, so the CLI's help, the report and the workflow's parsing
stay light.
"""

from .base import Settings, from_json, from_mapping, output_dict, setting, to_dict
from .compute import ComputeSettings, ContainerSettings
from .data import Columns, PreprocessSettings, ScreenSpec, SplitSettings
from .evaluate import EvaluateSettings
from .model import Architecture, CheckpointSettings, LoraSettings, PerturbationSettings
from .predict import InferenceSettings
from .report import BootstrapSettings
from .train import LossWeights, StageSettings, TrainSettings

__all__ = [
    "Architecture",
    "BootstrapSettings",
    "CheckpointSettings",
    "Columns",
    "ComputeSettings",
    "ContainerSettings",
    "EvaluateSettings",
    "InferenceSettings",
    "LoraSettings",
    "LossWeights",
    "PerturbationSettings",
    "PreprocessSettings",
    "ScreenSpec",
    "Settings",
    "SplitSettings",
    "StageSettings",
    "TrainSettings",
    "from_json",
    "from_mapping",
    "output_dict",
    "setting",
    "to_dict",
]
