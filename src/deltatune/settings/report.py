"""Settings of the report: its bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Settings, setting


@dataclass(frozen=True)
class BootstrapSettings(Settings):
    """Bootstrap draws, interval level and seed of the report's intervals (config ``report.bootstrap``)."""

    samples: int = setting(2000, minimum=100)
    level: float = setting(0.95, exclusiveMinimum=0, exclusiveMaximum=1)
    seed: int = 0
