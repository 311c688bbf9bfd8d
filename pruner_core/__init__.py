"""Pruning Explorer core: framework-free engine behind the app, the CLI, the tests and the benchmarks."""

__version__ = "0.1.0"
