"""The command line explains itself: every argument has help, defaults are shown, --version works."""

from __future__ import annotations

import argparse
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
