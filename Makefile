# The two commands of the README: `make demo` and `make test`.
# Both create .venv from the lock files when it is missing (or older than the locks).

PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
RUN := env PATH="$(BIN):$$PATH"
# pip compiles the installed modules one at a time; compileall does it on every core afterwards
# (where PYTHONDONTWRITEBYTECODE is set, a module never compiled is compiled again at every import).
PIP_FLAGS := --quiet --disable-pip-version-check --no-compile

.PHONY: setup demo test lint lock image container-smoke reliability config-docs

setup: $(STAMP)

$(STAMP): envs/torch.lock envs/requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -r envs/torch.lock
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps -r envs/requirements.lock
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true  # like pip: skips what is not 3.11
	touch $@

demo: $(STAMP)
	$(RUN) snakemake --cores all

test: $(STAMP)
	tests/ensure_chromium.sh
	tests/ensure_slurm.sh
	$(RUN) python -m pytest

# config/README.md, every config key with its default, from the schema and the settings (tested).
config-docs: $(STAMP)
	$(RUN) python -m deltatune.settings.reference workflow/schemas/config.schema.yaml > config/README.md

# The fault and bad-input suite alone, writing the table of what it observed.
reliability: $(STAMP)
	$(RUN) python -m pytest tests -n 0 -m reliability --reliability-table docs/reliability.md

# ruff's checks and formatting with the settings of pyproject.toml ([tool.ruff]), then
# Snakemake's own lint of the rules. `ruff format .` formats the tree.
lint: $(STAMP)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) snakemake --lint

# Build containers/Dockerfile with podman or docker on the pinned CUDA base, and a .sif where
# Apptainer is installed; prints the config line that runs every rule in it (containers/README.md).
image:
	containers/image.sh

# Build containers/Dockerfile with podman on a local Debian base and run the tiny config in it
# (containers/README.md); minutes, root, not part of `make test`.
container-smoke:
	containers/smoke.sh

# Refresh envs/requirements.lock from the current .venv (after a deliberate upgrade).
lock: $(STAMP)
	{ sed -n '1,4p' envs/requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | grep -v -E '^(torch|deltatune)=='; } > envs/requirements.lock.new
	mv envs/requirements.lock.new envs/requirements.lock
