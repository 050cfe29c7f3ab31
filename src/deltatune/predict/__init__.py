"""The prediction step (rules ``infer``, ``baseline``): test perturbations predicted from controls.

:mod:`.steps` holds the rules' entry points. :mod:`.inputs` gives each test cell its control
input, :mod:`.infer` runs a (fine-tuned) model, :mod:`.baselines` the rules of thumb,
:mod:`.prediction` writes the cell-eval-ready file (and puts someone else's prediction in its form).
"""
