"""Shared fixtures for the core tests."""

from __future__ import annotations

import pytest

from pruner_core.io.data import Dataset, load_data


@pytest.fixture(scope="session")
def demo_data() -> Dataset:
    """The embedded MNIST-5k demo (read once per session; never mutate it)."""
    return load_data("demo:mnist5k")
