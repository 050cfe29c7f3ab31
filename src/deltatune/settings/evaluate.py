"""Settings of evaluation: the cell-eval profile and the noise ceiling."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingsError
from .base import Settings, choice

PROFILES = ("anndata", "full", "minimal", "vcc", "de", "pds")


@dataclass(frozen=True)
class EvaluateSettings(Settings):
    """Which cell-eval profile to compute: ``anndata`` (fast, no DE) or ``full`` (with DE)
    (config ``evaluation``).

    ``ceiling_splits`` is how many random split-halves of the real cells estimate the noise
    ceiling.
    """

    profile: str = choice("anndata", PROFILES)
    ceiling_splits: int = 3

    def check(self) -> None:
        super().check()
        if self.ceiling_splits < 1:
            raise SettingsError("ceiling_splits must be at least 1")
