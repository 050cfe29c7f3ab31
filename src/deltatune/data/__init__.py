"""The data step (rules ``simulate``, ``check_obs``, ``preprocess``): from a screen to model-ready data.

:mod:`.steps` holds the rules' entry points. :mod:`.simulate` makes the embedded default's screen,
:mod:`.simulate_plates` one in Tahoe-100M's layout (a file per plate, every line on each),
:mod:`.readers` reads the rows a step needs, :mod:`.obs` checks the configured columns and the
cell lines, :mod:`.groups` and :mod:`.means` group cells and average them (every later step uses
them), :mod:`.genes` puts genes in a base model's order, :mod:`.preprocess` normalizes and
selects genes, :mod:`.splits` holds out perturbations.
"""
