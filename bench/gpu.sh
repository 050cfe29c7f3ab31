#!/usr/bin/env bash
# The GPU benchmark on a CUDA machine: .venv from the locks, then bench/gpu.py.
#
# On Linux x86_64, envs/torch.lock's torch==2.13.0 from PyPI is the CUDA build; where .venv
# already exists (or the machine reaches no package registry) the existing one is used.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make setup
.venv/bin/python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "torch in .venv sees no CUDA GPU (a CPU build, or no driver)")'
PATH="$PWD/.venv/bin:$PATH" exec .venv/bin/python bench/gpu.py "$@"
