"""The command line explains itself: every argument has help, defaults are shown, --version works."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import deltatune
from deltatune.cli import parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_argument_has_help():
    """The census: no argument of any command without a help text."""
    silent = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, command in _commands().items()
        for action in command._actions
        if not action.help
    ]
    assert silent == []


def test_every_json_settings_argument_lists_its_keys():
    """A JSON argument names its config section and every key its dataclass takes."""
    import dataclasses

    from deltatune import settings

    classes = {name: getattr(settings, name) for name in settings.__all__ if isinstance(getattr(settings, name), type)}
    found = 0
    for name, command in _commands().items():
        for action in command._actions:
            match = re.search(r"\((\w+)\); keys: ([\w, ]*)", action.help or "")
            if match is None:
                continue
            found += 1
            cls = classes.get(match.group(1)) or getattr(settings.train, match.group(1))
            assert match.group(2) == ", ".join(f.name for f in dataclasses.fields(cls)), (name, action.dest)
    assert found >= 15
    text = " ".join(_commands()["evaluate"].format_help().split())
    assert "keys: perturbation, control, cell_type, batch, drug, dose" in text


def test_help_shows_defaults_of_optional_arguments_only():
    text = _commands()["finetune"].format_help()
    assert "(default: 1)" in text  # --threads
    assert "(default: auto)" in text  # --accelerator
    assert "(default: None)" not in text  # required ones, and those without a default, say nothing


def test_version():
    done = subprocess.run(
        [sys.executable, "-m", "deltatune.cli", "--version"], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"deltatune {deltatune.__version__}"


def test_every_command_logs_its_time_and_exact_peak_memory(tmp_path):
    """bench/scale.py reads the peak from this line: Snakemake's benchmark files only sample it."""
    settings = '{"n_genes": 20, "cell_lines": ["a", "b"], "plates_per_line": 2, "n_drugs": 3, "cells_per_well": 2}'
    done = subprocess.run(
        [sys.executable, "-m", "deltatune.cli", "simulate", "--settings", settings, "--out", str(tmp_path / "s.h5ad")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    peak = re.search(r"simulate finished in [\d.]+ s, peak RSS (\d+) MiB", done.stderr)
    assert peak is not None, done.stderr[-2000:]
    assert 10 < int(peak.group(1)) < 100_000
