"""Memory and run time a rule's job asks for, from the size of its inputs.

A SLURM job that asks for too little memory is killed; one that asks for a fixed amount sized
for the demo is killed on the first real screen. Each rule asks for a base amount plus a
multiple of its input files' size on disk (``input.size_mb`` in Snakemake), times the attempt
number, so that ``retries:`` in a profile reruns a job killed for memory with more
(``profiles/slurm`` retries twice). The factors follow what each step holds in memory per byte
of (gzip-compressed) input: the CSR matrix it reads (2-3x the file), dense copies where a step
makes them (predictions, cell-eval's means), and the model. ``docs/running.md`` lists them.

The report also reads files it does not take as inputs: it hashes every screen file (sha256, for
``provenance.json``; taking the screen as an input would let its size set the report's memory).
Its time limit grows with them too, at :data:`HASH_MIN_PER_GB` (Tahoe's 314 GB: about an hour).

Only the standard library is imported: Snakemake evaluates these while it schedules jobs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Demand:
    """``base_mb + per_input_mb * input MB`` of memory, ``base_min + min_per_gb * input GB`` of time."""

    base_mb: int
    per_input_mb: float
    base_min: int
    min_per_gb: float


DEMANDS = {
    "simulate": Demand(4000, 0, 60, 0),  # written in row chunks: memory bounded by a chunk
    "genes": Demand(2000, 2, 30, 0),  # a checkpoint loaded once
    "check_obs": Demand(2000, 0.05, 15, 0.5),  # obs only: it grows with the cells, a small share of the file
    "preprocess": Demand(8000, 0.05, 30, 2),  # streamed: a chunk, obs, the compressed outputs (not the input)
    "pair": Demand(1000, 4, 15, 10),  # the dataset's CSR; group means are small
    "pretrain": Demand(4000, 4, 120, 120),  # the base lines' CSR and the model
    "finetune": Demand(4000, 4, 60, 60),  # the train cells' and controls' CSR and the model
    "trial": Demand(4000, 10, 90, 120),  # finetune, infer and evaluate of one search trial, in turn
    "choose": Demand(1000, 0, 5, 0),  # the trials' small records
    "infer": Demand(4000, 8, 30, 30),  # the controls' CSR and the dense prediction
    "baseline": Demand(2000, 8, 15, 15),  # the same without a model
    "reference": Demand(2000, 1, 15, 30),  # the training cells a chunk at a time; the reference is small
    "evaluate": Demand(4000, 10, 30, 60),  # real and predicted cells dense, and cell-eval's copies
    "ceiling": Demand(4000, 10, 30, 60),  # per-perturbation means of split halves (CSR); DE: a capped sample
    "report": Demand(4000, 1, 30, 10),  # one prediction at a time, and the tables
}


# sha256 reads a file at disk speed: 0.2 min per GB is 85 MB/s, a slow network file system's.
HASH_MIN_PER_GB = 0.2


def mem_mb(rule: str, input_mb: float, attempt: int = 1) -> int:
    """Memory (MB) for a job of ``rule`` whose inputs take ``input_mb`` on disk, on try ``attempt``."""
    demand = DEMANDS[rule]
    return int(round((demand.base_mb + demand.per_input_mb * input_mb) * attempt))


def runtime(rule: str, input_mb: float, attempt: int = 1, hashed_mb: float = 0.0) -> int:
    """Wall time (minutes) for the same job: a killed job may also have run out of time.
    ``hashed_mb``: files the job reads whole, to hash them, that are not among its inputs."""
    demand = DEMANDS[rule]
    minutes = demand.base_min + demand.min_per_gb * input_mb / 1024 + HASH_MIN_PER_GB * hashed_mb / 1024
    return int(round(minutes * attempt))
