"""The pairing strategies: which obs columns (:class:`~deltatune.settings.Columns` fields) a
perturbed cell's controls must share with it."""

from __future__ import annotations

STRATEGY_COLUMNS = {
    "random": (),
    "batch": ("batch",),
    "celltype": ("cell_type",),
    "batch_celltype": ("batch", "cell_type"),
}
STRATEGIES = tuple(STRATEGY_COLUMNS)


def plate_strategy(batch: str | None) -> str:
    """The strategy whose index holds each plate's control mean, which inference and the baselines
    start from: ``batch``, or ``random`` (one global mean) when the data has no plate column."""
    return "batch" if batch else "random"
