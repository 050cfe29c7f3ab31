"""The training step (rules ``pretrain``, ``finetune``): one loop for the base model and every stage.

:mod:`.steps` holds the rules' entry points. :mod:`.batches` draws cell sets with paired
controls, :mod:`.losses` is the delta-aware loss, :mod:`.doses` adds interpolated doses,
:mod:`.loop` is the resumable trainer, :mod:`.pretrain` and :mod:`.finetune` what each rule trains.
"""
