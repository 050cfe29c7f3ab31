"""Settings of inference: how test cells are represented."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Settings, choice

INFERENCE_MODES = ("control_mean", "matched_controls")


@dataclass(frozen=True)
class InferenceSettings(Settings):
    """Test cells get their plate's control mean, or sampled plate controls (config ``inference``)."""

    mode: str = choice("control_mean", INFERENCE_MODES)
    seed: int = 0
