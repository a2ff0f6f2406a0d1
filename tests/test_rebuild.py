"""Tests of tf_precrop.rebuild: new widths, same architecture, exact predicted cost.

Every rebuildable pattern of ``tests/builders.py`` and every bundled model is
rebuilt in both Keras lines. The input model must come out of every call —
successful or not — with bitwise identical weights and an identical config.
"""

import codecs
import marshal

import builders
import numpy as np
import pytest
import tensorflow as tf

import tf_precrop
from tf_precrop.backend import get_line
from tf_precrop.errors import WidthError

MULTIPLIERS = (0.5, 1.25)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras")


@pytest.fixture(params=builders.LINES)
def line(request):
    return request.param


def bundled(name, line):
    """A bundled model at CIFAR size (ShuffleNet: cifar stem, width 0.5)."""
    models = tf_precrop.models
    if name == "shufflenet_v2":
        return models.shufflenet_v2(
            input_shape=(32, 32, 3), classes=10, width=0.5, stem="cifar", line=line
        )
    return getattr(models, name)(line=line)


BUNDLED = ("resnet20", "shufflenet_v2", "mobilenet_v2_cifar")
"""Bundled models checked at every multiplier (resnet56 is resnet20, deeper: once)."""
BUNDLED_CASES = [(name, m) for name in BUNDLED for m in MULTIPLIERS] + [("resnet56", 0.5)]


# ------------------------------------------------------------------ helpers
def comparable(config):
    """``config`` with Lambda bytecode (Keras 3 and tf_keras) decoded to code objects.

    Keras 3 serializes a lambda with ``marshal``, whose bytes depend on the
    reference counts of the constants: the text changes once the function has
    run at all (in any forward pass), though the code is the same.
    """
    if isinstance(config, dict):
        if config.get("class_name") == "__lambda__":
            code = config["config"]["code"]
            return ("lambda", marshal.loads(codecs.decode(code.encode("ascii"), "base64")))
        if config.get("function_type") == "lambda" and isinstance(config.get("function"), tuple):
            # tf_keras: function = (base64 marshal, defaults, closure).
            code, *rest = config["function"]
            decoded = marshal.loads(codecs.decode(code.encode("ascii"), "base64"))
            config = {**config, "function": ("lambda", decoded, *rest)}
        return {k: comparable(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return type(config)(comparable(v) for v in config)
    return config


def snapshot(model):
    """What must not change: config and bitwise weights."""
    return comparable(model.get_config()), [w.copy() for w in model.get_weights()]


def assert_untouched(model, before):
    config, weights = before
    assert comparable(model.get_config()) == config
    now = model.get_weights()
    assert len(now) == len(weights)
    for a, b in zip(now, weights, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def layer_tree(model):
    """``[(name, class, subtree)]`` of every layer, nested models expanded."""
    return [
        (layer.name, type(layer).__name__, layer_tree(layer) if hasattr(layer, "layers") else None)
        for layer in model.layers
    ]


def all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def outputs(model, x):
    return [np.asarray(t) for t in tf.nest.flatten(model(x, training=False))]


def random_widths(graph, rng):
    """A random width per free group: 1..2x today's width, a multiple of multiple_of."""
    widths = {}
    for g in graph.free_groups:
        top = max(1, (2 * g.width) // g.multiple_of)
        widths[g.key] = int(rng.integers(1, top + 1)) * g.multiple_of
    return widths


def check_rebuild(model, widths):
    """Rebuilds ``model`` and checks everything that must hold; returns the new model."""
    before = snapshot(model)
    graph = tf_precrop.channel_groups(model)
    predicted = tf_precrop.profile(model, widths)  # before anything is built
    resolved = graph.resolve_widths(widths)
    new = tf_precrop.rebuild(model, widths)
    assert_untouched(model, before)

    assert new is not model
    assert type(new) is type(model)
    assert new.name == model.name
    assert builders.input_shapes(new) == builders.input_shapes(model)
    assert builders.output_shapes(new) == builders.output_shapes(model)
    assert layer_tree(new) == layer_tree(model)

    # Costs: predicted before building == what the built model holds.
    assert predicted.params == new.count_params()
    assert tf_precrop.profile(new).params == new.count_params()
    # MACs counted another way: from the built layers' configs and shapes.
    assert predicted.macs == builders.independent_macs(new)
    # Every group of the new model has the width asked for. (A grouped conv may
    # turn depthwise-like, e.g. Conv2D(8, groups=4) on 4 channels, and so merge
    # its group into its input's: a subset, not equality.)
    assert tf_precrop.channel_groups(new).widths().items() <= resolved.items()

    # Nothing is shared with the original.
    assert not {id(layer) for layer in all_layers(new)} & {id(layer) for layer in all_layers(model)}
    assert not {id(w) for w in new.weights} & {id(w) for w in model.weights}

    x = builders.sample_inputs(model)
    got = outputs(new, x)
    assert [o.shape for o in got] == [(2, *s[1:]) for s in builders.output_shapes(model)]
    assert all(np.isfinite(o).all() for o in got)
    assert_untouched(model, before)
    return new


# ----------------------------------------------------------------- patterns
@pytest.mark.parametrize("multiplier", MULTIPLIERS)
@pytest.mark.parametrize("pattern", builders.REBUILDABLE)
def test_rebuilt_pattern_keeps_its_interface_and_costs_what_was_predicted(
    pattern, multiplier, line
):
    model = builders.build(pattern, line)
    new = check_rebuild(model, multiplier)
    if any(not g.fixed for g in tf_precrop.channel_groups(model)):
        assert new.count_params() != model.count_params()


@pytest.mark.parametrize("pattern", builders.REBUILDABLE)
def test_a_multiplier_of_one_reproduces_the_model_config_exactly(pattern, line):
    model = builders.build(pattern, line)
    new = tf_precrop.rebuild(model, 1.0)
    assert comparable(new.get_config()) == comparable(model.get_config())
    assert new.count_params() == model.count_params()


def test_rebuild_changes_only_the_config_entries_that_set_widths(line):
    model = builders.chain(line)
    new = tf_precrop.rebuild(model, {"c1": 3})
    for old_layer, new_layer in zip(model.layers, new.layers, strict=True):
        old, got = old_layer.get_config(), new_layer.get_config()
        if old_layer.name == "c1":
            assert got.pop("filters") == 3 and old.pop("filters") == 8
        assert got == old
    assert new.get_layer("c2").kernel.shape == (3, 3, 3, 12)


def test_a_rebuilt_grouped_conv_as_depthwise_updates_groups_and_filters(line):
    new = tf_precrop.rebuild(builders.groups_as_depthwise(line), {"a": 5})
    config = new.get_layer("dwg").get_config()
    assert (config["filters"], config["groups"]) == (5, 5)


def test_a_rebuilt_shuffle_reshape_keeps_two_groups_in_its_targets(line):
    new = tf_precrop.rebuild(builders.shuffle_reshape(line), {"a": 6, "b": 2})
    assert tuple(new.get_layer("split_groups").target_shape) == (8, 8, 2, 4)
    assert tuple(new.get_layer("merge_groups").target_shape) == (8, 8, 8)
    new = tf_precrop.rebuild(builders.shuffle_reshape(line), {"a": 6, "b": 4})
    assert tuple(new.get_layer("split_groups").target_shape) == (8, 8, 2, 5)


def test_a_rebuilt_flatten_dense_sizes_the_dense_kernel_from_the_new_conv(line):
    new = tf_precrop.rebuild(builders.flatten_dense(line), {"c": 2, "fc": 5})
    assert tuple(new.get_layer("fc").kernel.shape) == (6 * 6 * 2, 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_widths_on_a_densenet_like_model_cost_what_was_predicted(seed, line):
    model = builders.densenet_like(line)
    graph = tf_precrop.channel_groups(model)
    check_rebuild(model, random_widths(graph, np.random.default_rng(seed)))


# ---------------------------------------------------------- bundled models
@pytest.mark.parametrize("name, multiplier", BUNDLED_CASES)
def test_rebuilt_bundled_model_keeps_its_interface_and_costs_what_was_predicted(
    name, multiplier, line
):
    check_rebuild(bundled(name, line), multiplier)


@pytest.mark.parametrize(
    "line, seed", [("keras3", 0), ("keras3", 1), ("keras3", 2), ("tf_keras", 0)]
)
@pytest.mark.parametrize("name", ["resnet20", "shufflenet_v2", "mobilenet_v2_cifar"])
def test_random_widths_on_a_bundled_model_cost_what_was_predicted(name, seed, line):
    model = bundled(name, line)
    graph = tf_precrop.channel_groups(model)
    widths = random_widths(graph, np.random.default_rng(seed))
    predicted = tf_precrop.profile(model, widths, graph=graph).params
    new = tf_precrop.rebuild(model, widths, graph=graph)
    assert predicted == new.count_params()
    assert tf_precrop.channel_groups(new).widths() == graph.resolve_widths(widths)


# ------------------------------------------------------------------- errors
def test_changing_a_fixed_group_raises_width_error_and_leaves_the_model_untouched(line):
    model = builders.grouped_conv(line)
    before = snapshot(model)
    with pytest.raises(WidthError, match="'image' is fixed at 3"):
        tf_precrop.rebuild(model, {"image": 4})
    with pytest.raises(WidthError, match="'out' is fixed at 10"):
        tf_precrop.rebuild(model, {"out": 5})
    with pytest.raises(WidthError, match="'image' is fixed"):
        tf_precrop.profile(model, {"image": 4})
    assert_untouched(model, before)


def test_a_width_that_is_not_a_multiple_raises_width_error_and_leaves_the_model_untouched(line):
    model = builders.grouped_conv(line)
    before = snapshot(model)
    with pytest.raises(WidthError, match="multiple of 4. Received: g=6"):
        tf_precrop.rebuild(model, {"g": 6})
    with pytest.raises(WidthError, match="multiple of 2"):
        tf_precrop.rebuild(builders.shuffle_layers(line), {"p": 3})
    with pytest.raises(WidthError):
        tf_precrop.rebuild(model, 0.0)
    assert_untouched(model, before)


def test_an_unchanged_width_of_a_fixed_group_is_accepted(line):
    model = builders.chain(line)
    new = tf_precrop.rebuild(model, {"image": 3, "out": 10, "c1": 4})
    assert new.get_layer("c1").filters == 4


def test_an_unknown_group_key_raises_width_error():
    with pytest.raises(WidthError):
        tf_precrop.rebuild(builders.chain(), {"c3": 4})


def test_a_graph_of_the_wrong_type_is_refused():
    with pytest.raises(TypeError, match="ChannelGraph"):
        tf_precrop.rebuild(builders.chain(), 0.5, graph={"c1": 8})


def test_rebuild_accepts_a_precomputed_graph(line):
    model = builders.residual(line)
    graph = tf_precrop.channel_groups(model)
    new = tf_precrop.rebuild(model, {"stem": 4}, graph=graph)
    assert [new.get_layer(n).filters for n in ("stem", "a", "b", "c")] == [4, 6, 4, 16]


def test_an_operation_with_a_per_channel_constant_is_kept_or_refused(line):
    k = builders.keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    c = k.layers.Conv2D(8, 3, padding="same", name="c")(x)
    y = k.layers.Conv2D(6, 1, name="post")(c * np.arange(8, dtype="float32"))
    model = k.Model(x, k.layers.GlobalAveragePooling2D(name="gap")(y))
    graph = tf_precrop.channel_groups(model)
    # The constant has 8 entries, one per channel of "c": that width is pinned.
    assert graph["c"].fixed and graph["c"].width == 8
    assert graph["c"].reason  # the op pins it, and says so
    assert graph["post"].fixed  # the model output
    new = tf_precrop.rebuild(model, 0.5)
    assert new.get_layer("c").filters == 8  # kept, so the constant still fits
    assert new(np.zeros((1, 8, 8, 3), "float32")).shape == (1, 6)


def test_dict_inputs_in_unsorted_key_order_keep_their_keys(line):
    model = builders.dict_inputs(line)
    new = tf_precrop.rebuild(model, 0.5)
    x = {"zimage": np.zeros((1, 8, 8, 3), "float32"), "ameta": np.zeros((1, 4), "float32")}
    assert new(x).shape == (1, 2)
    assert new.count_params() == tf_precrop.profile(model, 0.5).params


# -------------------------------------------------------------- save / load
@pytest.mark.parametrize("pattern", builders.REBUILDABLE)
def test_a_rebuilt_pattern_survives_a_keras_file_round_trip(pattern, line, tmp_path):
    model = builders.build(pattern, line)
    new = tf_precrop.rebuild(model, 0.5)
    path = tmp_path / f"{pattern}{get_line(line).save_suffix}"
    new.save(path)
    loaded = get_line(line).load_model(str(path), safe_mode="lambda" not in pattern)
    x = builders.sample_inputs(model)
    for a, b in zip(outputs(new, x), outputs(loaded, x), strict=True):
        np.testing.assert_array_equal(a, b)
    assert layer_tree(loaded) == layer_tree(new)
    assert tf_precrop.profile(loaded).params == new.count_params()


@pytest.mark.parametrize("name", BUNDLED)
def test_a_rebuilt_bundled_model_survives_a_keras_file_round_trip(name, line, tmp_path):
    new = tf_precrop.rebuild(bundled(name, line), 0.5)
    path = tmp_path / f"{name}.keras"
    new.save(path)
    loaded = get_line(line).load_model(str(path))
    x = builders.sample_inputs(new)
    for a, b in zip(outputs(new, x), outputs(loaded, x), strict=True):
        np.testing.assert_array_equal(a, b)
    assert tf_precrop.channel_groups(loaded).widths() == tf_precrop.channel_groups(new).widths()
