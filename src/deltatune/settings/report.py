"""Settings of the report: its bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Settings


@dataclass(frozen=True)
class BootstrapSettings(Settings):
    """Bootstrap draws, interval level and seed of the report's intervals (config ``report.bootstrap``)."""

    samples: int = 2000
    level: float = 0.95
    seed: int = 0
