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

_HF = "(transformers is not installed: the Hugging Face ViT is not in the zoo yet)"

KNOWN_FAILURES: dict[tuple[str, str], str] = {
    ('vit_timm', 'scan_channel'): 'RuntimeError: mat1 and mat2 shapes cannot be multiplied (8x0 and 32x32)',
    ('vit_timm', 'prune_channel'): "WrongResult: refused after a run was started: SpecError: pruning layer 'patch_embed.proj' broke the model's forward: RuntimeError: shape '[1, 17, 22]' is invalid for input of size 544",
    ('vit_timm', 'export_channel'): "AssertionError: needs the channel run, which failed: SpecError: pruning layer 'patch_embed.proj' broke the model's forward: RuntimeError: shape '[1, 17, 22]' is invalid for input of size 544",
    ('vit_timm', 'reload_channel'): "AssertionError: needs the channel run, which failed: SpecError: pruning layer 'patch_embed.proj' broke the model's forward: RuntimeError: shape '[1, 17, 22]' is invalid for input of size 544",
    ('vit_mha', 'scan_channel'): 'ValueError: Module NonDynamicallyQuantizableLinear(in_features=32, out_features=32, bias=True) is not in the dependency graph.',
    ('vit_mha', 'prune_unstructured'): 'WrongResult: 50% unstructured zeroed 33% of the weights a user would count; untouched: blocks.0.attn.in_proj_weight, blocks.1.attn.in_proj_weight',
    ('vit_mha', 'prune_channel'): "WrongResult: refused after a run was started: SpecError: pruning layer 'patch_embed.proj' broke the model's forward: RuntimeError: `embed_dim` must divide evenly by `num_heads`",
    ('vit_mha', 'export_channel'): "AssertionError: needs the channel run, which failed: SpecError: pruning layer 'patch_embed.proj' broke the model's forward: RuntimeError: `embed_dim` must divide evenly by `num_heads`",
    ('vit_mha', 'reload_channel'): "AssertionError: needs the channel run, which failed: SpecError: pruning layer 'patch_embed.proj' broke the model's forward: RuntimeError: `embed_dim` must divide evenly by `num_heads`",
    ('conv1d_seq', 'load'): 'WrongResult: load_data gives samples (1, 4, 32); the file holds (4, 32)',
    ('lstm', 'load'): 'WrongResult: load_data gives samples (1, 12, 6); the file holds (12, 6)',
    ('lstm', 'scan_channel'): "WrongResult: refused naming no layer: SpecError: granularity 'channel' applies to none of the chosen layers of 'tests.zoo.architectures:lstm'",
    ('gru', 'load'): 'WrongResult: load_data gives samples (1, 12, 6); the file holds (12, 6)',
    ('gru', 'scan_channel'): "WrongResult: refused naming no layer: SpecError: granularity 'channel' applies to none of the chosen layers of 'tests.zoo.architectures:gru'",
    ('dwsep_concat', 'scan_channel'): 'RuntimeError: The size of tensor a (32) must match the size of tensor b (48) at non-singleton dimension 0',
    ('dwsep_concat', 'prune_channel'): 'RuntimeError: The size of tensor a (32) must match the size of tensor b (48) at non-singleton dimension 0',
    ('dwsep_concat', 'export_channel'): 'AssertionError: needs the channel run, which failed: RuntimeError: The size of tensor a (32) must match the size of tensor b (48) at non-singleton dimension 0',
    ('dwsep_concat', 'reload_channel'): 'AssertionError: needs the channel run, which failed: RuntimeError: The size of tensor a (32) must match the size of tensor b (48) at non-singleton dimension 0',
    ('text_cnn', 'load'): "CompatibilityError: data 'text_cnn.npz' has samples of shape (16,) that model 'tests.zoo.architectures:text_cnn' cannot take: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'info'): "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'analyze'): "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'scan_unstructured'): "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'scan_channel'): "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'prune_unstructured'): "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'prune_nm'): "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'prune_vector'): "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'prune_kernel'): "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'prune_channel'): "RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'export_unstructured'): "AssertionError: needs the unstructured run, which failed: RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'export_channel'): "AssertionError: needs the channel run, which failed: RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'reload_unstructured'): "AssertionError: needs the unstructured run, which failed: RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'reload_channel'): "AssertionError: needs the channel run, which failed: RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
    ('text_cnn', 'compare'): "WrongResult: entry original · tests.zoo.architectures:text_cnn: RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)",
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
                "vgg_groupnorm", "vit_timm", "vit_mha", "conv1d_seq", "lstm", "gru", "mlp_tabular"}
    assert families <= set(ZOO), f"missing: {sorted(families - set(ZOO))} {_HF}"
    assert len(STEPS) == len(set(STEPS)) and len(CELLS) == len(ZOO) * len(STEPS)


def test_coverage_is_the_share_of_cells_that_pass(tmp_path):
    results = run_all(tmp_path, archs=["mlp_tabular"], steps=["load", "info"])
    assert [r.status for r in results.values()] == ["pass", "pass"]
    assert coverage(results) == 1.0
    mixed = {("a", "x"): Outcome("pass"), ("a", "y"): Outcome("refused"), ("a", "z"): Outcome("n/a"),
             ("b", "x"): Outcome("fail", "boom")}
    assert coverage(mixed) == 0.75
