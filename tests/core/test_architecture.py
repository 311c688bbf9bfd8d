"""The house rules, checked on the code: layers import down only, no import circle, no private names across modules,
small modules and thin pages (see ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "pruner_core"
# Bottom to top; a module may import its own layer and the layers below it. sensitivity and compare are peers.
LAYERS = {
    "errors": 0, "config": 1, "io": 2, "graph": 3, "pruning": 4, "measure": 5, "pipeline": 6,
    "sensitivity": 7, "compare": 7, "present": 8, "frontends": 9,
}
MAX_MODULE_LINES = 500
MAX_PAGE_LINES = 200


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """Every ``pruner_core`` import of a file, at any depth: (module, names taken, line)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("pruner_core"):
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{path}:{node.lineno}: relative import; pruner_core imports by absolute name")
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("pruner_core")]
    return found


FILES = sorted(CORE.rglob("*.py"))
MODULES = {module_name(f): f for f in FILES}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def resolve(module: str, names: list[str]) -> list[str]:
    """The modules an import statement reads: ``from pkg import mod`` reads pkg.mod."""
    targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return targets or [module]


def test_every_core_module_sits_in_a_layer_folder():
    loose = [m for m in MODULES if m != "pruner_core" and layer(m) is None]
    assert not loose, f"modules outside the layer folders {sorted(LAYERS)}: {loose}"


def test_imports_point_down_only():
    upward = []
    for name, path in MODULES.items():
        for module, names, line in imports(path):
            for target in resolve(module, names):
                if layer(target) is not None and layer(name) is not None and layer(target) > layer(name):
                    upward.append(f"{path.relative_to(REPO)}:{line} ({name.split('.')[1]}) imports {target}")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_no_import_circle():
    edges = {name: {t for module, names, _ in imports(path) for t in resolve(module, names) if t in MODULES and t != name}
             for name, path in MODULES.items()}
    done, stack, circles = set(), [], []

    def visit(node: str) -> None:
        if node in stack:
            circles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(edges[node]):
            visit(nxt)
        stack.pop()
        done.add(node)

    for name in sorted(edges):
        visit(name)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_private_name_is_imported_across_modules():
    private = [f"{path.relative_to(REPO)}:{line} takes {n} from {module}"
               for path in [*FILES, *sorted((REPO / "pages").glob("*.py")), REPO / "app.py"]
               for module, names, line in imports(path) for n in names if n.startswith("_")]
    assert not private, "\n".join(private)


PAGES = sorted(p for p in (REPO / "pages").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", [*FILES, REPO / "pages" / "_common.py"], ids=lambda p: str(p.relative_to(REPO)))
def test_modules_are_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it by job"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_pages_are_thin(path):
    text = path.read_text()
    lines = len(text.splitlines())
    assert lines < MAX_PAGE_LINES, f"{path.name} has {lines} lines; move what is not UI into the core"
    assert "import torch" not in text, "pages never do tensor math"


def test_core_never_imports_streamlit_nor_compares_handler_names():
    for path in FILES:
        text = path.read_text()
        assert "import streamlit" not in text, path
        assert '"prune_in_channels"' not in text and '"prune_out_channels"' not in text, (
            f"{path}: compare torch-pruning handlers by identity, not by name")


def test_option_names_and_their_implementations_agree():
    from pruner_core.config import options
    from pruner_core.pipeline.finetune import OPTIMIZERS
    from pruner_core.pipeline.run import SCHEDULES
    from pruner_core.pruning.recipe import Recipe
    from pruner_core.pruning.target import SCOPES

    assert list(OPTIMIZERS) == list(options.OPTIMIZERS) and list(SCHEDULES) == list(options.SCHEDULES)
    assert list(SCOPES) == list(options.SCOPES)
    for kind in options.SCHEDULES:
        steps = 1 if kind in options.SINGLE_STEP_SCHEDULES else 2
        assert Recipe(schedule={"kind": kind, "steps": steps}).schedule.kind == kind
