"""The pruning recipe: YAML in and out, every way a recipe can be wrong, and resolving it against a model."""

from __future__ import annotations

import pytest

from pruner_core.errors import PrunerError, SpecError
from pruner_core.io.models import load_model
from pruner_core.pruning.criteria import CRITERIA, valid_pairs
from pruner_core.pruning.describe import describe_model
from pruner_core.pruning.granularities import GRANULARITIES
from pruner_core.pruning.recipe import Recipe, RecipeError

FULL = """\
granularity: channel
criterion: bn_scale
scope: global
sparsity: 0.4
layers: {conv1: 0.25, '0': 0.1}
exclude: [fc2]
nm: {n: 1, m: 8}
round_to: 8
schedule: {kind: iterative, steps: 3}
finetune: {epochs: 0.5, lr: 1.0e-05, optimizer: sgd, batch_size: 32, distill: true, temperature: 2.0, alpha: 0.9}
seed: 7
"""


@pytest.fixture(scope="module")
def cnn_layers():
    """LayerInfo of demo:mnist-cnn (conv1, conv2, fc1, fc2; fc2 is the classifier)."""
    return describe_model(load_model("demo:mnist-cnn"), (1, 28, 28))


# --- YAML round trip ----------------------------------------------------------------------------------


def test_defaults_match_the_documented_recipe():
    r = Recipe()
    assert (r.granularity, r.criterion, r.scope, r.sparsity) == ("unstructured", "l1", "layerwise", 0.5)
    assert (r.layers, r.exclude, (r.nm.n, r.nm.m), r.round_to) == ({}, None, (2, 4), None)
    assert (r.schedule.kind, r.schedule.steps, r.finetune.epochs, r.finetune.optimizer) == ("oneshot", 1, 1, "adamw")
    assert Recipe.from_yaml("{}") == r


@pytest.mark.parametrize("text", ["{}", FULL, "granularity: nm\ncriterion: wanda\nnm: {n: 1, m: 4}\nlayers: {fc1: 0}"])
def test_yaml_round_trips_exactly_in_the_documented_key_order(text):
    r = Recipe.from_yaml(text)
    out = r.to_yaml()
    assert Recipe.from_yaml(out) == r
    keys = [line.split(":")[0] for line in out.splitlines() if line and not line.startswith("#")]
    assert keys == list(Recipe.model_fields)


def test_yaml_is_readable_one_key_per_line():
    out = Recipe.from_yaml(FULL).to_yaml()
    assert "sparsity: 0.4\n" in out
    assert "schedule: {kind: iterative, steps: 3}\n" in out
    assert "finetune: {epochs: 0.5, lr: 1.0e-05, optimizer: sgd," in out
    assert "epochs: 1," in Recipe().to_yaml()  # whole epochs are written as integers


def test_save_and_load_atomically(tmp_path):
    r = Recipe.from_yaml(FULL)
    path = r.save(tmp_path / "r.yaml")
    assert Recipe.load(path) == r
    r.replace(seed=8).save(path)  # overwrite in place
    assert Recipe.load(path).seed == 8
    assert [p.name for p in tmp_path.iterdir()] == ["r.yaml"]  # no temp file left behind


def test_a_missing_file_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match=r"recipe file '.*nope\.yaml' cannot be read"):
        Recipe.load(tmp_path / "nope.yaml")


# --- bad recipes: one line naming the source, the key, the value and what is valid -----------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("granularity: block", r"granularity: unknown granularity; valid: " + ", ".join(GRANULARITIES) + "; got 'block'"),
        ("criterion: snip", r"criterion: unknown criterion; valid: " + ", ".join(CRITERIA) + "; got 'snip'"),
        ("scope: local", r"scope: unknown scope; valid: layerwise, global; got 'local'"),
        ("sparsity: 1", r"sparsity: input should be less than 1; got 1"),
        ("sparsity: -0.1", r"sparsity: input should be greater than or equal to 0; got -0.1"),
        ("sparsity: 50%", r"sparsity: input should be a valid number; got '50%'"),
        ("sparsity: .nan", r"sparsity: input should be a finite number"),
        ("layers: {conv1: 1.5}", r"layers.conv1: input should be less than 1; got 1.5"),
        ("layers: {0: 0.5}", r"layers: key 0: input should be a valid string \(layer names are strings: quote"),
        ("layers: [conv1]", r"layers: input should be a valid dictionary; got \['conv1'\]"),
        ("exclude: fc2", r"exclude: input should be a valid list; got 'fc2'"),
        ("nm: {n: 4, m: 4}", r"nm: n must be smaller than m \(1 <= n < m\); got n=4, m=4"),
        ("nm: {n: 0, m: 4}", r"nm.n: input should be greater than or equal to 1; got 0"),
        ("round_to: 0\ngranularity: channel", r"round_to: input should be greater than or equal to 1; got 0"),
        ("round_to: 8", r"round_to: applies only to granularity channel; got round_to=8 with granularity unstructured"),
        ("schedule: {kind: cubic}", r"schedule.kind: unknown schedule; valid: oneshot, iterative, gmp; got 'cubic'"),
        ("schedule: {steps: 5}", r"schedule: oneshot prunes in 1 step; got steps=5"),
        ("schedule: {kind: gmp, steps: 0}", r"schedule.steps: input should be greater than or equal to 1; got 0"),
        ("finetune: {lr: 0}", r"finetune.lr: input should be greater than 0; got 0"),
        ("finetune: {optimizer: rmsprop}", r"finetune.optimizer: unknown optimizer; valid: adamw, adam, sgd; got 'rmsprop'"),
        ("finetune: {epochs: yes}", r"finetune.epochs: input should be a valid number; got True"),
        ("finetune: {alpha: 2}", r"finetune.alpha: input should be less than or equal to 1; got 2"),
        ("finetune: {batch_size: 0.5}", r"finetune.batch_size: input should be a valid integer; got 0.5"),
        ("seed: '1'", r"seed: input should be a valid integer; got '1'"),
    ],
)
def test_bad_value_names_source_key_value_and_valid_ones(text, expected):
    with pytest.raises(RecipeError, match="^my.yaml: " + expected) as info:
        Recipe.from_yaml(text, source="my.yaml")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, key, valid",
    [
        ("sparsty: 0.5", "sparsty", "granularity, criterion, scope, sparsity"),
        ("finetune: {learning_rate: 0.1}", "finetune.learning_rate", "epochs, lr, optimizer"),
        ("schedule: {kind: gmp, every: 2}\nfinetune: {epochs: 1}", "schedule.every", "kind, steps"),
        ("nm: {n: 2, m: 4, k: 1}", "nm.k", "n, m"),
    ],
)
def test_unknown_key_is_refused_with_the_valid_keys(text, key, valid):
    with pytest.raises(RecipeError, match=rf"unknown key '{key}'; valid keys here: {valid}"):
        Recipe.from_yaml(text)


@pytest.mark.parametrize(
    "granularity, criterion", [(g, c) for g in GRANULARITIES for c in CRITERIA if (g, c) not in valid_pairs()]
)
def test_impossible_pair_is_refused_with_the_valid_pairs(granularity, criterion):
    with pytest.raises(RecipeError, match=rf"criterion '{criterion}' cannot prune at granularity '{granularity}'") as info:
        Recipe.from_yaml(f"granularity: {granularity}\ncriterion: {criterion}")
    assert "Valid pairs:" in str(info.value) and "channel: l1" in str(info.value)


@pytest.mark.parametrize("granularity, criterion", valid_pairs())
def test_every_valid_pair_is_accepted(granularity, criterion):
    assert Recipe(granularity=granularity, criterion=criterion).criterion == criterion


@pytest.mark.parametrize("kind", ["iterative", "gmp"])
def test_gradual_schedules_need_fine_tuning(kind):
    with pytest.raises(RecipeError, match=rf"schedule.kind: {kind} fine-tunes between pruning steps.*epochs > 0"):
        Recipe.from_yaml(f"schedule: {{kind: {kind}, steps: 4}}\nfinetune: {{epochs: 0}}")
    assert Recipe.from_yaml("finetune: {epochs: 0}").finetune.epochs == 0  # one-shot without fine-tuning is fine


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sparsity: [0.5", r"not valid YAML at line 1, column 15: expected .,. or .\]."),
        ("sparsity: 0.5\nsparsity: 0.6", r"not valid YAML at line 2.*key 'sparsity' is given twice"),
        ("- l1\n- l2", r"a recipe is a mapping of keys \(granularity, .*\); got a list"),
        ("", r"a recipe is a mapping of keys .*; got empty"),
        ("!!python/object/apply:os.system [echo hi]", r"not valid YAML"),  # safe_load: nothing is ever run
    ],
)
def test_unreadable_yaml_is_a_recipe_error(text, expected):
    with pytest.raises(RecipeError, match="^r.yaml: " + expected):
        Recipe.from_yaml(text, source="r.yaml")


def test_recipe_errors_are_pruner_errors_also_when_constructed_directly():
    assert issubclass(RecipeError, SpecError) and issubclass(RecipeError, PrunerError)
    with pytest.raises(RecipeError, match=r"^recipe: finetune.temperature: input should be greater than 0; got -1"):
        Recipe(finetune={"temperature": -1})
    with pytest.raises(RecipeError, match=r"^recipe: sparsity"):
        Recipe().replace(sparsity=2)


@pytest.mark.parametrize(
    "text, summary",
    [
        ("{}", "unstructured l1 layerwise 50%, oneshot, 1 epoch fine-tune"),
        (FULL, "channel bn_scale global 40% of channels (round to 8) (+2 layer overrides), iterative 3 rounds,"
               " 0.5 epochs fine-tune + distill"),
        ("granularity: nm\nfinetune: {epochs: 0}", "nm 2:4 l1 layerwise, oneshot, no fine-tune"),
        ("sparsity: 0.125\nschedule: {kind: gmp, steps: 10}\nfinetune: {epochs: 3}",
         "unstructured l1 layerwise 12.5%, gmp 10 steps, 3 epochs fine-tune"),
    ],
)
def test_summary_is_one_line(text, summary):
    assert Recipe.from_yaml(text).summary() == summary


# --- resolving against a described model ---------------------------------------------------------------


def test_target_excludes_the_classifier_by_default(cnn_layers):
    t = Recipe(sparsity=0.3, seed=5).target(cnn_layers)
    assert t.ratios == {"conv1": 0.3, "conv2": 0.3, "fc1": 0.3}  # fc2's outputs are the classes
    assert (t.granularity, t.criterion, t.scope, t.seed) == ("unstructured", "l1", "layerwise", 5)


def test_explicit_overrides_and_exclude(cnn_layers):
    t = Recipe(layers={"conv1": 0.1, "fc1": 0.0, "fc2": 0.2}, exclude=["conv2"]).target(cnn_layers)
    assert t.ratios == {"conv1": 0.1, "fc2": 0.2}  # ratio 0 is dropped; exclude replaces the default
    assert Recipe(exclude=[]).target(cnn_layers).ratios == dict.fromkeys(["conv1", "conv2", "fc1", "fc2"], 0.5)


def test_granularity_skips_layers_it_does_not_apply_to_unless_asked_for(cnn_layers):
    assert list(Recipe(granularity="kernel").target(cnn_layers).ratios) == ["conv2"]  # no kernels in fc1; conv1 reads 1 channel
    with pytest.raises(RecipeError, match=r"layers.fc1: granularity kernel does not apply to layer 'fc1': Linear"):
        Recipe(granularity="kernel", layers={"fc1": 0.5}).target(cnn_layers)


def test_nm_uses_the_recipes_m_and_fixes_the_ratio(cnn_layers):
    t = Recipe(granularity="nm", nm={"n": 1, "m": 8}).target(cnn_layers)
    assert t.ratios == {"conv2": 0.875, "fc1": 0.875} and t.nm == (1, 8)  # conv1 has 1 input channel
    with pytest.raises(RecipeError, match=r"layers.conv1: granularity nm .*1 input channels is not a multiple of M=8"):
        Recipe(granularity="nm", nm={"n": 1, "m": 8}, layers={"conv1": 0.5}).target(cnn_layers)


def test_channel_target_carries_round_to(cnn_layers):
    t = Recipe(granularity="channel", sparsity=0.25, round_to=8).target(cnn_layers)
    assert t.ratios == {"conv1": 0.25, "conv2": 0.25, "fc1": 0.25} and t.round_to == 8


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"layers": {"conv3": 0.2}}, r"layers: no prunable layer named 'conv3'; valid: conv1, conv2, fc1, fc2"),
        ({"exclude": ["fc", "bn1"]}, r"exclude: no prunable layer named 'fc', 'bn1'; valid: conv1, conv2, fc1, fc2"),
        ({"layers": {"fc2": 0.2}}, r"layers.fc2: layer 'fc2' is excluded \(by default: its outputs are the model's"),
        ({"layers": {"conv1": 0.2}, "exclude": ["conv1"]}, r"layers.conv1: layer 'conv1' is excluded \(it is listed"),
        ({"granularity": "channel", "layers": {"fc2": 0.2}, "exclude": []},
         r"layers.fc2: granularity channel does not apply to layer 'fc2': its outputs are the model's outputs"),
    ],
)
def test_target_refuses_names_and_overrides_that_do_not_fit(cnn_layers, kwargs, expected):
    with pytest.raises(RecipeError, match=expected):
        Recipe(**kwargs).target(cnn_layers)


def test_excluding_one_layer_of_a_coupled_group_is_refused_naming_the_group():
    layers = describe_model(load_model("demo:resnet20"), (1, 28, 28))
    stage1 = [info.name for info in layers if info.group == next(i.group for i in layers if i.name == "conv1")]
    assert stage1 == ["conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"]
    with pytest.raises(RecipeError, match=r"exclude: layer 'conv1' is coupled with 'layer1.0.conv2', 'layer1.1.conv2', "
                                          r"'layer1.2.conv2' .*exclude the whole group \(conv1, layer1.0.conv2"):
        Recipe.from_dict({"granularity": "channel", "exclude": ["conv1", "fc"]}).target(layers)
    target = Recipe.from_dict({"granularity": "channel", "exclude": [*stage1, "fc"]}).target(layers)
    assert not set(stage1) & set(target.ratios) and "layer2.0.conv1" in target.ratios
    masks = Recipe.from_dict({"granularity": "unstructured", "exclude": ["conv1", "fc"]}).target(layers)
    assert "conv1" not in masks.ratios and "layer1.0.conv2" in masks.ratios  # masks: each layer on its own
