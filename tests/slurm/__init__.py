"""Helpers that start a real single-node SLURM for tests/test_slurm.py."""
