"""Cell sets: the "sentences" a State Transition model reads.

ST attends across a set of cells that share a perturbation; a set here also shares its plate and
cell type, so that its paired controls can come from one plate too. Sets are drawn for all groups
at once: cells are shuffled within groups by one lexsort, cut into runs of ``set_size``, and the
last, short set of a group is filled up by sampling its own group again.
"""

from __future__ import annotations

import numpy as np


def make_cell_sets(groups: np.ndarray, set_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cut cells into sets of ``set_size`` positions (indices into ``groups``), one group per set.

    Returns ``(sets, filled)``: an int64 array (n_sets, set_size) in which every cell appears
    exactly once where ``filled`` is True, and padding cells of the set's own group, drawn at
    random, where it is False.
    """
    n = len(groups)
    if n == 0:
        return np.empty((0, set_size), dtype=np.int64), np.empty((0, set_size), dtype=bool)
    order = np.lexsort((rng.random(n), groups))
    sorted_groups = groups[order]
    boundaries = np.flatnonzero(np.diff(sorted_groups)) + 1
    starts = np.concatenate([[0], boundaries])
    sizes = np.diff(np.concatenate([starts, [n]]))
    sets_per_group = -(-sizes // set_size)
    first_set = np.concatenate([[0], np.cumsum(sets_per_group)[:-1]])

    group_of_row = np.repeat(np.arange(len(starts)), sizes)
    position = np.arange(n) - starts[group_of_row]
    set_id = first_set[group_of_row] + position // set_size
    n_sets = int(sets_per_group.sum())

    cell_sets = np.empty((n_sets, set_size), dtype=np.int64)
    filled = np.zeros((n_sets, set_size), dtype=bool)
    cell_sets[set_id, position % set_size] = order
    filled[set_id, position % set_size] = True

    set_group = np.repeat(np.arange(len(starts)), sets_per_group)
    empty_set, empty_slot = np.nonzero(~filled)
    g = set_group[empty_set]
    pick = starts[g] + np.floor(rng.random(len(g)) * sizes[g]).astype(np.int64)
    cell_sets[empty_set, empty_slot] = order[pick]
    return cell_sets, filled
