"""The data step (rules ``simulate``, ``genes``, ``preprocess``): from a screen to model-ready data.

:mod:`.simulate` makes the embedded default's screen, :mod:`.readers` reads the rows a step
needs, :mod:`.obs` checks the configured columns, :mod:`.genes` puts genes in a base model's
order, :mod:`.preprocess` normalizes and selects genes, :mod:`.splits` holds out perturbations.
"""
