"""The pairing step (rule ``pair``): perturbed cells paired with controls, and control means.

:mod:`.index` is the saved pairing index training and inference read; the group codes and
means it is built from are :mod:`deltatune.data.groups` and :mod:`deltatune.data.means`.
"""
