"""The prediction step (rules ``infer``, ``baseline``): test perturbations predicted from controls.

:mod:`.inputs` gives each test cell its control input, :mod:`.infer` runs a (fine-tuned) model,
:mod:`.baselines` the rules of thumb, :mod:`.prediction` writes the cell-eval-ready file.
"""
