"""Settings of the machine a rule runs on."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Settings, choice

ACCELERATORS = ("auto", "cpu", "gpu")  # Lightning Fabric's names


@dataclass(frozen=True)
class ComputeSettings(Settings):
    """Threads of the training / inference and evaluation rules, and the device (config ``compute``).

    ``accelerator: cpu`` keeps every rule off the GPU; the rules then ask for no GPU either.
    """

    train_threads: int = 1
    eval_threads: int = 2
    accelerator: str = choice("auto", ACCELERATORS)
