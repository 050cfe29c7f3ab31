"""Settings of the hyper-parameter search (config ``search``) and the trials it runs.

The trials are drawn while Snakemake parses the workflow, so each trial's settings are a rule's
``params`` (a changed range reruns only the trials it changes). Only the standard library is used.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

from ..errors import SettingsError
from ..metrics import MATCHED, SCORES
from .base import Settings, setting

METHODS = ("random", "grid")
METRICS = tuple(s.name for s in SCORES if s.searchable)  # the catalogue's scores a search may choose on
# The design's ranges (design.md 2.7): a parameter is a stage setting's dotted path, with either
# ``values`` to choose from or a ``low``-``high`` range of numbers (sampled on a log scale with
# ``log``; an integer setting takes ``values``).
DESIGN_SPACE = {
    "lr": {"low": 1e-4, "high": 1e-3, "log": True},
    "lora.rank": {"values": [4, 8, 16]},
    "loss.delta_mse": {"low": 0.1, "high": 1.0},
    "loss.delta_pearson": {"low": 0.1, "high": 0.5},
    "loss.base": {"low": 0.5, "high": 1.0},
}
SIGNIFICANT = 3  # sampled numbers are rounded to this many significant digits, for readable settings


@dataclass(frozen=True)
class SearchSettings(Settings):
    """What to search: the stage it starts from, the space, how many trials, how to choose.

    ``metric`` is the mean over the **validation** perturbations (the test perturbations are
    never read before the winner is scored); ``grid`` runs every combination of ``values``
    (``trials`` is then ignored), ``random`` draws ``trials`` settings with ``seed``.
    """

    start: str = ""
    method: str = setting("random", choices=METHODS)
    trials: int = setting(4, minimum=1)
    seed: int = 0
    metric: str = setting(MATCHED, choices=METRICS)
    parameters: dict[str, dict[str, Any]] = setting(default_factory=lambda: dict(DESIGN_SPACE))

    def check(self) -> None:
        super().check()
        if not self.start:
            raise SettingsError("start: name the stage the search starts from")
        if not self.parameters:
            raise SettingsError("parameters: name at least one setting to search")
        for name, space in self.parameters.items():
            numbers = all(
                isinstance(space.get(end), (int, float)) and not isinstance(space.get(end), bool)
                for end in ("low", "high")
            )
            if not (set(space) <= {"values"} and space.get("values")) and not (
                set(space) <= {"low", "high", "log"} and numbers and space["low"] <= space["high"]
            ):
                raise SettingsError(f"parameters.{name}: give 'values' (a list) or numbers 'low' <= 'high' (and 'log')")
            if self.method == "grid" and "values" not in space:
                raise SettingsError(f"parameters.{name}: a grid search needs 'values'")


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")


def _draw(space: dict[str, Any], rng: random.Random) -> Any:
    if "values" in space:
        return rng.choice(space["values"])
    low, high = float(space["low"]), float(space["high"])
    if space.get("log"):
        return _round(math.exp(rng.uniform(math.log(low), math.log(high))))
    return _round(rng.uniform(low, high))


def trials(settings: SearchSettings) -> list[dict[str, Any]]:
    """Each trial's overrides (dotted setting path -> value), in trial order."""
    names = sorted(settings.parameters)
    if settings.method == "grid":
        grid = itertools.product(*(settings.parameters[n]["values"] for n in names))
        return [dict(zip(names, values, strict=True)) for values in grid]
    rng = random.Random(settings.seed)
    return [{n: _draw(settings.parameters[n], rng) for n in names} for _ in range(settings.trials)]


def with_overrides(stage: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``stage`` settings with each dotted path of ``overrides`` set (nested mappings copied)."""
    merged = copy.deepcopy(stage)
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = merged
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise SettingsError(f"{path}: '{key}' is a setting, not a section of settings")
        node[leaf] = value
    return merged
