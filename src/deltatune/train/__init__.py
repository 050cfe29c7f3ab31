"""The training step (rules ``pretrain``, ``finetune``): one loop for the base model and every stage.

:mod:`.batches` draws cell sets with paired controls, :mod:`.losses` is the delta-aware loss,
:mod:`.loop` the resumable trainer, :mod:`.pretrain` and :mod:`.finetune` what each rule trains.
"""
