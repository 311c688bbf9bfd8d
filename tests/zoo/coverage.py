"""Run every zoo cell and report the share that passes: the benchmark figure ``coverage``.

>>> from tests.zoo.coverage import coverage
>>> coverage()  # doctest: +SKIP
0.71

From the shell (prints each cell, then the fraction; ``--known`` prints the failures as a ``KNOWN_FAILURES`` table)::

    .venv/bin/python -m tests.zoo.coverage [--arch resnet18 ...] [--step prune_channel ...] [--known]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.zoo.architectures import ZOO
from tests.zoo.cells import STEPS, Case, Outcome, outcome, single_thread


def run_all(
    folder: str | Path | None = None,
    *,
    archs: Iterable[str] | None = None,
    steps: Iterable[str] | None = None,
    callback: Callable[[str, str, Outcome], None] | None = None,
) -> dict[tuple[str, str], Outcome]:
    """Every (architecture, step) cell's outcome, architectures in zoo order, steps in :data:`STEPS` order.

    Args:
        folder: where the cells write their files (a temporary folder, removed after, when None).
        archs, steps: a subset (default: all).
        callback: called after each cell.
    """
    archs = list(archs) if archs is not None else list(ZOO)
    steps = list(steps) if steps is not None else list(STEPS)
    unknown = [a for a in archs if a not in ZOO] + [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown architecture(s) or step(s): {', '.join(unknown)}")
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="zoo-") as tmp:
            return run_all(tmp, archs=archs, steps=steps, callback=callback)
    results: dict[tuple[str, str], Outcome] = {}
    with single_thread():
        _run(Path(folder), archs, steps, callback, results)
    return results


def _run(folder: Path, archs: list[str], steps: list[str], callback, results: dict) -> None:
    for arch in archs:
        sub = folder / arch
        sub.mkdir(parents=True, exist_ok=True)
        case = Case(arch, sub)
        for step in steps:
            results[arch, step] = result = outcome(case, step)
            if callback is not None:
                callback(arch, step, result)


def coverage(results: dict[tuple[str, str], Outcome] | None = None, **kwargs) -> float:
    """The fraction of cells that pass (a clean refusal and ``n/a`` count as passing); runs them when not given."""
    results = results if results is not None else run_all(**kwargs)
    return sum(r.passed for r in results.values()) / len(results) if results else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", help="an architecture (repeatable; default: all)")
    parser.add_argument("--step", action="append", help="a step (repeatable; default: all)")
    parser.add_argument("--known", action="store_true", help="print the failures as a KNOWN_FAILURES table")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # torch-pruning's and the ONNX exporter's notices would drown the table

    def show(arch: str, step: str, r: Outcome) -> None:
        print(f"{arch:22s} {step:20s} {r.status:8s} {r.detail}", flush=True)

    results = run_all(archs=args.arch, steps=args.step, callback=show)
    print(f"coverage {coverage(results):.3f} ({sum(r.passed for r in results.values())}/{len(results)} cells)")
    if args.known:
        print("KNOWN_FAILURES = {")
        for (arch, step), r in results.items():
            if not r.passed:
                print(f"    ({arch!r}, {step!r}): {r.detail!r},")
        print("}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
