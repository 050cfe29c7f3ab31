"""Shared fixtures: a tiny simulated screen and its preprocessed parts, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deltatune.columns import Columns
from deltatune.preprocess import PreprocessSettings, preprocess
from deltatune.settings import from_mapping
from deltatune.simulate import ScreenSpec, simulate_screen
from deltatune.splits import SplitSettings

TESTS = Path(__file__).parent
REPO = TESTS.parent
TINY_CONFIG = TESTS / "config" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


@pytest.fixture(scope="session")
def columns() -> Columns:
    return Columns()


@pytest.fixture(scope="session")
def screen_spec(tiny_config) -> ScreenSpec:
    return from_mapping(ScreenSpec, tiny_config["data"]["simulate"], "simulate")


@pytest.fixture(scope="session")
def _screen(screen_spec):
    return simulate_screen(screen_spec)


@pytest.fixture
def screen(_screen):
    """Raw counts of the tiny screen (a fresh copy per test)."""
    return _screen.copy()


@pytest.fixture(scope="session")
def _preprocessed(_screen, columns):
    settings = PreprocessSettings(
        target_cell_line="c", n_top_genes=40, split=SplitSettings(val_fraction=0.0, test_fraction=0.3)
    )
    return preprocess(_screen.copy(), columns, settings)


@pytest.fixture
def preprocessed(_preprocessed):
    """Preprocessed tiny screen: base lines, target line and split (copies per test)."""
    p = _preprocessed
    return type(p)(base=p.base.copy(), target=p.target.copy(), split=p.split.copy(), summary=dict(p.summary))
