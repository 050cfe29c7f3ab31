"""The State Transition model that training and inference share.

:mod:`.st` builds ST and holds a base model with its genes and perturbations, :mod:`.checkpoint`
reads and writes ST run directories, :mod:`.stage` a trained stage's folder, :mod:`.perturbations`
matches labels to the base vocabulary, :mod:`.lora` attaches peft adapters, :mod:`.cellsets` cuts
cells into the sets ST reads; :mod:`.steps` is the ``genes`` rule's entry point.
"""
