"""Settings of inference: how test cells are represented."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Settings, setting

INFERENCE_MODES = ("control_mean", "matched_controls")


@dataclass(frozen=True)
class InferenceSettings(Settings):
    """Test cells get their plate's control mean, or sampled plate controls (config ``inference``)."""

    mode: str = setting("control_mean", choices=INFERENCE_MODES)
    seed: int = 0
