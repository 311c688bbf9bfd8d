"""Fixtures for every test folder."""

from __future__ import annotations

import sys
import uuid

import pytest

from pruner_core.io.models import allow_factories


@pytest.fixture(autouse=True)
def any_factory_after_each_test():
    """The app narrows factory specs process-wide (as a server should); a test that ran it leaves the default back."""
    yield
    allow_factories(None)


PROBE_SOURCE = """
from pathlib import Path
Path(__file__).with_suffix(".imported").write_text("imported")
from torch import nn

def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
"""


def write_probe(folder) -> str:
    """Write an importable module into ``folder`` that leaves ``<name>.imported`` beside itself when imported.

    Its ``make()`` returns an MNIST classifier. Returns the module's (fresh) name.
    """
    name = f"probe_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(PROBE_SOURCE)
    return name


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A probe module (see :func:`write_probe`) on ``sys.path``: (its name, the marker its import leaves)."""
    name = write_probe(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, tmp_path / f"{name}.imported"
    sys.modules.pop(name, None)
