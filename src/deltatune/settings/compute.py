"""Settings of the machine a rule runs on."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Settings, setting

ACCELERATORS = ("auto", "cpu", "gpu")  # Lightning Fabric's names


@dataclass(frozen=True)
class ComputeSettings(Settings):
    """Threads of the training / inference and evaluation rules, and the device (config ``compute``).

    ``accelerator: cpu`` keeps every rule off the GPU; the rules then ask for no GPU either. All
    three say how rules run, not what they compute, and none reruns anything when changed; on
    another device or thread count the same seeds can give results that differ in the last
    bits of floating point (a GPU's kernels, a different reduction order), which is why each
    stage records the device it trained on. Run a rule again on purpose with ``--forcerun``.
    """

    train_threads: int = setting(1, minimum=1, run_only=True)
    eval_threads: int = setting(2, minimum=1, run_only=True)
    accelerator: str = setting("auto", choices=ACCELERATORS, run_only=True)
