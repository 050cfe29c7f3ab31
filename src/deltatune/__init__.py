"""deltatune: LoRA fine-tuning of State Transition perturbation models, scored on the delta."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deltatune")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
