"""The pairing strategies: which obs columns a perturbed cell's controls must share with it."""

STRATEGIES = ("random", "batch", "celltype", "batch_celltype")
