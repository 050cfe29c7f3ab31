"""Settings of the machine a rule runs on."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import SettingsError
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


DIGEST = "@sha256:"


@dataclass(frozen=True)
class ContainerSettings(Settings):
    """The image every rule runs in under ``--sdm apptainer`` (config ``container``).

    ``image`` is a registry reference pinned by digest (``ghcr.io/lab/deltatune@sha256:...``,
    optionally with ``docker://``), or a local Apptainer image (a ``.sif`` file), which Snakemake
    runs as it is. A tag alone is refused: it can be pushed again, and the results folder would
    name an image other than the one its rules ran in. None takes ``containers/images.lock``'s
    ``workflow`` entry. Changing it reruns what ran in the old image (Snakemake's
    ``software-env`` trigger), not what never ran in one.
    """

    image: str | None = None

    @property
    def is_file(self) -> bool:
        """Whether ``image`` is a local image file rather than a registry reference."""
        return self.image is not None and (self.image.endswith(".sif") or self.image.startswith(("/", ".")))

    def check(self) -> None:
        super().check()
        if self.image is None or self.is_file:
            return
        if DIGEST not in self.image:
            raise SettingsError(
                f"image {self.image!r} is not pinned by digest: give REGISTRY/NAME@sha256:<digest> (what "
                "`make image` prints, or `podman push --digestfile`) or a local .sif file"
            )

    def uri(self, workdir: str) -> str | None:
        """``image`` as Snakemake's ``container:`` takes it: an absolute path for a file, a
        ``docker://`` URL for a registry reference without a scheme."""
        if self.image is None:
            return None
        if self.is_file:
            return os.path.abspath(os.path.join(workdir, self.image))
        return self.image if "://" in self.image else f"docker://{self.image}"
