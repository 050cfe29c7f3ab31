"""The pairing step (rule ``pair``): perturbed cells paired with controls, and control means.

:mod:`.groups` codes cells by plate / cell type, :mod:`.means` averages rows per group,
:mod:`.index` is the saved pairing index training and inference read.
"""
