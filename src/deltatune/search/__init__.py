"""The hyper-parameter search: trials scored on the validation perturbations, and the choice.

:mod:`.validation` gives the view of the split a trial sees (validation perturbations in the
place of the test ones, the test perturbations in none); :mod:`.selection` summarizes a trial's
scores and chooses the best trial; :mod:`.steps` holds the rules' entry points: a trial is the
workflow's own fine-tuning, inference and evaluation entry points called on that view.
"""
