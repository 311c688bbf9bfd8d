"""Errors raised at the boundaries (files, uploads, specs, recipes, CLI arguments).

Every message names the bad value and what would have been valid. Pages and the CLI
catch :class:`PrunerError` only; any other exception is a bug.
"""

from __future__ import annotations


class PrunerError(Exception):
    """Base class of every user-facing error of the explorer."""


class SpecError(PrunerError):
    """A model or data spec that names nothing we know how to load."""


class ModelLoadError(PrunerError):
    """A model file that is missing, corrupt or does not fit its architecture."""


class TrustError(PrunerError):
    """A file that can only be loaded by executing code, without the trust switch."""


class DataError(PrunerError):
    """A data file that is missing, corrupt, empty or malformed."""


class CompatibilityError(PrunerError):
    """Data that does not fit the model (sample shape, label range)."""
