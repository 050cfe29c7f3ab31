"""The roles of the report's rows, named once.

A report row is the untuned ``base`` model, a fine-tuned stage, a baseline (one of them the
zero-effect floor), the noise ceiling, or the bound for a noise-free prediction that the report
derives from the ceiling's split halves. The workflow writes each row's role into the report's
manifest, so that no code has to guess a role from a name.
"""

from __future__ import annotations

BASE = "base"
STAGE = "stage"
BASELINE = "baseline"
FLOOR = "floor"
CEILING = "ceiling"
BOUND = "bound"
ROLES = (BASE, STAGE, BASELINE, FLOOR, CEILING, BOUND)
FROM_REAL_DATA = (CEILING, BOUND)  # rows without a prediction: real cells against real cells

BASE_ROW = "base"  # the untuned base model's row (a reserved stage name)
CEILING_ROW = "ceiling"
BOUND_ROW = "noise_free_bound"
TUNED_ROW = "tuned"  # the search's winner, retrained (a reserved stage name when the config searches)
FLOOR_BASELINE = "baseline_plate_control"  # predicts no drug effect: the floor (deltatune.predict.baselines)


def row_roles(stages: list[str], baselines: list[str]) -> dict[str, str]:
    """Every report row in report order (base, stages, baselines, ceiling) with its role."""
    roles = {BASE_ROW: BASE, **dict.fromkeys(stages, STAGE)}
    roles |= {b: FLOOR if b == FLOOR_BASELINE else BASELINE for b in baselines}
    return roles | {CEILING_ROW: CEILING}


def with_bound(rows_roles: dict[str, str]) -> dict[str, str]:
    """The report's rows: the workflow's, and after the ceiling the noise-free bound derived from it."""
    rows = {}
    for row, role in rows_roles.items():
        rows[row] = role
        if role == CEILING:
            rows[BOUND_ROW] = BOUND
    return rows


def is_baseline(role: str) -> bool:
    """Baselines and the floor: fixed rules of thumb, no model."""
    return role in (BASELINE, FLOOR)


def row_of(rows_roles: dict[str, str], role: str) -> str | None:
    """The row of a role that has one row (base, floor, ceiling), or None when the run has none."""
    return next((row for row, r in rows_roles.items() if r == role), None)
