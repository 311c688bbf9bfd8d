"""The public zoo (issue 12, "Any model a user brings"): every architecture through every step a user takes.

One test per (architecture, step) cell; what each step does and what makes it pass is in :mod:`tests.zoo.cells`
(a step also passes when the engine refuses it cleanly, before any work, naming the layer and why).

``KNOWN_FAILURES`` is the state of the engine when the table was written: each cell that fails, with its error in
one line. Those cells are strict xfails, so a fix shows up as XPASS(strict): remove the cell from the table then.
Regenerate the whole table with ``.venv/bin/python -m tests.zoo.coverage --known``.
"""

from __future__ import annotations

import pytest

from tests.zoo.architectures import ZOO
from tests.zoo.cells import CELLS, STEPS, Case, Outcome, check, single_thread
from tests.zoo.coverage import coverage, run_all

KNOWN_FAILURES: dict[tuple[str, str], str] = {
}


def _param(arch: str, step: str):
    reason = KNOWN_FAILURES.get((arch, step))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(arch, step, marks=marks, id=f"{arch}-{step}")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """``case(arch)``: the architecture's :class:`Case`, made once for the module (its model, data and runs are
    shared by its cells, which never change them). Torch runs on one thread meanwhile (see ``single_thread``)."""
    cases: dict[str, Case] = {}

    def get(arch: str) -> Case:
        if arch not in cases:
            cases[arch] = Case(arch, tmp_path_factory.mktemp(f"zoo-{arch}"))
        return cases[arch]

    with single_thread():
        yield get


@pytest.mark.parametrize(("arch", "step"), [_param(a, s) for a, s in CELLS])
def test_cell(case, arch, step):
    result = check(case(arch), step)  # raises where the cell fails
    if result.status == "n/a":
        pytest.skip(result.detail)


def test_the_known_failures_are_cells_of_the_zoo():
    unknown = [cell for cell in KNOWN_FAILURES if cell not in set(CELLS)]
    assert not unknown, f"KNOWN_FAILURES names cells the zoo does not have: {unknown}"
    assert all(reason.strip() and "\n" not in reason for reason in KNOWN_FAILURES.values())


def test_the_zoo_covers_the_architectures_the_issue_lists():
    families = {"resnet18", "resnet50", "mobilenet_v2", "efficientnet", "googlenet", "densenet", "unet",
                "vgg_groupnorm", "vit_timm", "vit_mha", "conv1d_seq", "lstm", "gru", "mlp_tabular", "hf_vit"}
    assert families <= set(ZOO), f"missing: {sorted(families - set(ZOO))}"
    assert len(STEPS) == len(set(STEPS)) and len(CELLS) == len(ZOO) * len(STEPS)


def test_coverage_is_the_share_of_cells_that_pass(tmp_path):
    results = run_all(tmp_path, archs=["mlp_tabular"], steps=["load", "info"])
    assert [r.status for r in results.values()] == ["pass", "pass"]
    assert coverage(results) == 1.0
    mixed = {("a", "x"): Outcome("pass"), ("a", "y"): Outcome("refused"), ("a", "z"): Outcome("n/a"),
             ("b", "x"): Outcome("fail", "boom")}
    assert coverage(mixed) == 0.75
