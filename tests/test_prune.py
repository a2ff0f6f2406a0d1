"""tf_precrop.prune: exactness on dead channels, consistency, importance, budgets, errors."""

import builders
import numpy as np
import pytest
from prune_helpers import (
    assert_unchanged,
    kill_dropped,
    randomize,
    relative_error,
    snapshot,
    zero_bn,
    zero_dw,
    zero_in,
    zero_out,
)

import tf_precrop
from tf_precrop.errors import UnsupportedLayerError, WidthError
from tf_precrop.graph import channel_groups

TOL = 1e-5


def _check_exact(model, widths, **kwargs):
    """Prunes ``model`` to ``widths``: the input model is untouched, outputs equal, params predicted."""
    snap = snapshot(model)
    pruned = tf_precrop.prune(model, widths=widths, **kwargs)
    assert_unchanged(model, snap)
    x = builders.sample_inputs(model, seed=3)
    assert relative_error(model, pruned, x) <= TOL
    assert pruned.count_params() == tf_precrop.profile(model, widths).params
    return pruned


def _k(line):
    return builders.keras_of(line)


# ----------------------------------------------------------------- exactness
@pytest.mark.parametrize("line", builders.LINES)
def test_residual_with_batch_norm(line):
    k = _k(line)
    x = k.Input((8, 8, 3), name="image")
    s = k.layers.Conv2D(8, 3, padding="same", name="stem")(x)
    s = k.layers.BatchNormalization(name="bn_s")(s)
    s = k.layers.ReLU(name="relu_s")(s)
    y = k.layers.Conv2D(6, 3, padding="same", name="a")(s)
    y = k.layers.BatchNormalization(name="bn_a")(y)
    y = k.layers.ReLU(name="relu_a")(y)
    y = k.layers.Conv2D(8, 3, padding="same", name="b")(y)
    y = k.layers.BatchNormalization(name="bn_b")(y)
    y = k.layers.Add(name="sum")([s, y])
    y = k.layers.ReLU(name="relu")(y)
    y = k.layers.Conv2D(16, 1, name="c")(y)
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    model = k.Model(x, k.layers.Dense(10, name="out")(y))
    randomize(model)
    for name in ("stem", "b"):
        zero_out(model, name, [2, 5])
    for name in ("bn_s", "bn_b"):
        zero_bn(model, name, [2, 5])
    for name in ("a", "c"):
        zero_in(model, name, [2, 5])
    zero_out(model, "a", [0])
    zero_bn(model, "bn_a", [0])
    zero_in(model, "b", [0])
    zero_out(model, "c", [3, 7, 11])
    zero_in(model, "out", [3, 7, 11])
    assert {"stem", "a", "c"} <= {g.key for g in channel_groups(model).free_groups}
    pruned = _check_exact(model, {"stem": 6, "a": 5, "c": 13})
    # The kept channels' weights are the originals'.
    kept = [0, 1, 3, 4, 6, 7]
    np.testing.assert_array_equal(
        pruned.get_layer("bn_s").get_weights()[2], model.get_layer("bn_s").get_weights()[2][kept]
    )


def test_inverted_residual_with_depthwise():
    k = _k("keras3")
    x = k.Input((8, 8, 3), name="image")
    s = k.layers.Conv2D(8, 3, padding="same", name="stem")(x)
    s = k.layers.BatchNormalization(name="bn_s")(s)
    y = k.layers.Conv2D(16, 1, name="expand")(s)
    y = k.layers.BatchNormalization(name="bn_e")(y)
    y = k.layers.ReLU(6.0, name="relu_e")(y)
    y = k.layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = k.layers.BatchNormalization(name="bn_dw")(y)
    y = k.layers.ReLU(6.0, name="relu_dw")(y)
    y = k.layers.Conv2D(8, 1, name="project")(y)
    y = k.layers.BatchNormalization(name="bn_p")(y)
    y = k.layers.Add(name="sum")([s, y])
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    model = k.Model(x, k.layers.Dense(10, name="out")(y))
    randomize(model)
    dead_s, dead_e = [1, 4], [0, 9, 15]
    for name in ("stem", "project"):
        zero_out(model, name, dead_s)
    for name in ("bn_s", "bn_p"):
        zero_bn(model, name, dead_s)
    for name in ("expand", "out"):
        zero_in(model, name, dead_s)
    zero_out(model, "expand", dead_e)
    zero_bn(model, "bn_e", dead_e)
    zero_dw(model, "dw", dead_e)
    zero_bn(model, "bn_dw", dead_e)
    zero_in(model, "project", dead_e)
    _check_exact(model, {"stem": 6, "expand": 13})


def test_concatenation_offsets():
    k = _k("keras3")
    x = k.Input((8, 8, 3), name="image")
    a = k.layers.Conv2D(8, 3, padding="same", name="a")(x)
    a = k.layers.BatchNormalization(name="bn_a")(a)
    b = k.layers.Conv2D(4, 1, name="b")(x)
    y = k.layers.Concatenate(name="cat")([a, b])
    y = k.layers.Conv2D(6, 3, padding="same", name="c")(y)
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    model = k.Model(x, k.layers.Dense(10, name="out")(y))
    randomize(model)
    zero_out(model, "a", [1, 6])
    zero_bn(model, "bn_a", [1, 6])
    zero_out(model, "b", [3])
    zero_in(model, "c", [1, 6, 8 + 3])  # b's channel 3 sits after a's 8
    _check_exact(model, {"a": 6, "b": 3})


def _add_of_a_concatenation():
    """conv_c added to concat(conv_a, conv_b): c's channels meet a's and b's in part (NASNet-like)."""
    k = _k("keras3")
    x = k.Input((8, 8, 3), name="image")
    a = k.layers.Conv2D(4, 3, padding="same", name="a")(x)
    b = k.layers.Conv2D(4, 1, name="b")(x)
    c = k.layers.Conv2D(8, 1, name="c")(x)
    y = k.layers.Add(name="add")([k.layers.Concatenate(name="cat")([a, b]), c])
    t = k.layers.Add(name="tie")([a, b])  # a and b: one group, so c = 2a is not fixed
    y = k.layers.Concatenate(name="cat2")([y, t])
    y = k.layers.Conv2D(16, 3, padding="same", name="d")(y)
    y = k.layers.ReLU(name="relu")(y)
    y = k.layers.Conv2D(16, 3, padding="same", name="e")(y)
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    return randomize(k.Model(x, k.layers.Dense(10, name="out")(y)))


def test_add_of_a_concatenation_keeps_those_channels_whole():
    model = _add_of_a_concatenation()
    graph = channel_groups(model)
    assert not graph["a"].fixed  # the graph allows cutting a (and c = 2a with it)
    with pytest.raises(UnsupportedLayerError, match="combined element-wise") as info:
        tf_precrop.prune(model, widths=0.5)
    assert {"'a'", "'c'"} & set(str(info.value).replace(",", " ").split())
    # A budget keeps those groups whole and prunes the others (d, e) to meet it.
    small = tf_precrop.prune(model, 0.7, budget="params")
    widths = channel_groups(small).widths()
    for name in ("a", "b", "c"):
        np.testing.assert_array_equal(small.get_layer(name).get_weights()[0], model.get_layer(name).get_weights()[0])
    assert small.get_layer("d").filters < 16 or small.get_layer("e").filters < 16
    assert abs(small.count_params() / model.count_params() - 0.7) <= 0.01 * 1.5
    # And the cut channels of d/e are removed exactly once they are dead.
    changed = {k: w for k, w in widths.items() if w != graph[k].width}
    kill_dropped(model, _drop_evenly(_widths_for(model, changed)))
    _check_exact(model, changed)


def _shuffle(k, kind, y):
    if kind == "layer":
        from tf_precrop.layers import for_line

        return for_line("keras3").ChannelShuffle(2, name="shuffle")(y)
    y = k.layers.Reshape((8, 8, 2, 4), name="split_groups")(y)
    y = k.layers.Permute((1, 2, 4, 3), name="swap")(y)
    return k.layers.Reshape((8, 8, 8), name="merge_groups")(y)


@pytest.mark.parametrize("kind", ["layer", "reshape"])
def test_channel_shuffle(kind):
    k = _k("keras3")
    x = k.Input((8, 8, 3), name="image")
    a = k.layers.Conv2D(4, 1, name="a")(x)
    b = k.layers.Conv2D(4, 1, name="b")(x)
    y = k.layers.Concatenate(name="cat")([a, b])
    y = _shuffle(k, kind, y)
    y = k.layers.Conv2D(6, 1, name="c")(y)
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    model = k.Model(x, k.layers.Dense(10, name="out")(y))
    randomize(model)
    zero_out(model, "a", [1, 3])
    zero_out(model, "b", [0, 2])
    # After the shuffle, a_i sits at 2i and b_i at 2i + 1.
    zero_in(model, "c", [2, 6, 1, 5])
    _check_exact(model, {"a": 2, "b": 2})


def test_split_keeps_each_half():
    from tf_precrop.layers import for_line

    k, blocks = _k("keras3"), for_line("keras3")
    x = k.Input((8, 8, 3), name="image")
    s = k.layers.Conv2D(8, 1, name="stem")(x)
    passed, branch = blocks.ChannelSplit(2, name="split1")(s)
    b1 = k.layers.Conv2D(4, 1, name="b1")(branch)
    y = k.layers.Concatenate(name="cat1")([passed, b1])
    passed2, branch2 = blocks.ChannelSplit(2, name="split2")(y)
    b2 = k.layers.Conv2D(4, 1, name="b2")(branch2)
    y = k.layers.Concatenate(name="cat2")([passed2, b2])
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    model = k.Model(x, k.layers.Dense(10, name="out")(y))
    randomize(model)
    zero_out(model, "stem", [1, 6])
    zero_in(model, "b1", [6 - 4])
    zero_out(model, "b1", [2])
    zero_in(model, "b2", [2])
    zero_out(model, "b2", [0])
    zero_in(model, "out", [1, 4 + 0])
    groups = {g.key for g in channel_groups(model).free_groups}
    assert groups == {"stem", "b2"}
    _check_exact(model, {"stem": 6, "b2": 3})


def test_squeeze_excite():
    k = _k("keras3")
    x = k.Input((8, 8, 3), name="image")
    c = k.layers.Conv2D(16, 3, padding="same", name="c")(x)
    c = k.layers.BatchNormalization(name="bn")(c)
    c = k.layers.ReLU(name="relu")(c)
    s = k.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(c)
    s = k.layers.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = k.layers.Conv2D(16, 1, activation="sigmoid", name="se_expand")(s)
    y = k.layers.Multiply(name="excite")([c, s])
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    model = k.Model(x, k.layers.Dense(10, name="out")(y))
    randomize(model)
    zero_out(model, "c", [3, 12])
    zero_bn(model, "bn", [3, 12])
    zero_in(model, "se_reduce", [3, 12])
    zero_out(model, "se_expand", [3, 12])
    zero_in(model, "out", [3, 12])
    zero_out(model, "se_reduce", [1])
    zero_in(model, "se_expand", [1])
    _check_exact(model, {"c": 14, "se_reduce": 3})


def test_grouped_conv_keeps_per_group():
    k = _k("keras3")
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 1, name="a")(x)
    y = k.layers.Conv2D(16, 3, groups=4, padding="same", name="g")(y)
    y = k.layers.Conv2D(6, 1, name="c")(y)
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    model = k.Model(x, k.layers.Dense(10, name="out")(y))
    randomize(model)
    dead_a = [0, 3, 5, 6]  # one of each conv group's two input channels
    zero_out(model, "a", dead_a)
    layer = model.get_layer("g")
    w = layer.get_weights()
    for ch in dead_a:
        w[0][..., ch % 2, (ch // 2) * 4 : (ch // 2 + 1) * 4] = 0
    layer.set_weights(w)
    dead_g = [1, 6, 8, 15]  # one of each conv group's four outputs
    zero_out(model, "g", dead_g)
    zero_in(model, "c", dead_g)
    _check_exact(model, {"a": 4, "g": 12})


def test_nested_model():
    model = builders.nested_functional("keras3")
    randomize(model)
    zero_out(model, "pre", [2])
    zero_in(model, "inner/i1", [2])
    zero_out(model, "inner/i1", [0, 7])
    zero_in(model, "inner/i2", [0, 7])
    zero_out(model, "inner/i2", [5])
    zero_in(model, "post", [5])
    keys = {g.key for g in channel_groups(model).free_groups}
    assert {"pre", "inner/i1", "inner/i2"} <= keys
    _check_exact(model, {"pre": 4, "inner/i1": 6, "inner/i2": 11})


def _drop_evenly(width_of_class):
    """A keeps_fn for kill_dropped: each class keeps what ``width_of_class`` says."""

    def keeps_fn(trace, classes):
        from tf_precrop.prune.selection import _keep_with_parts, _parts_of

        keeps = {}
        rng = np.random.default_rng(1)
        for cls in classes:
            if "conflict" in cls:
                continue  # kept whole by prune
            members = cls["members"]
            width = width_of_class(members)
            if width is None or width == cls["roots"].size:
                continue
            importance = rng.random(cls["roots"].size) + 1
            keep = _keep_with_parts(cls["roots"], importance, width, _parts_of(trace, cls), "x")
            for p in members:
                keeps[p.slot] = keep
        return keeps

    return keeps_fn


def _widths_for(model, widths):
    graph = channel_groups(model)
    new = graph.resolve_widths(widths)

    def width_of_class(members):
        p = members[0]
        if p.call is None:
            return None
        return int(p.call.outputs[p.index].evaluate(new))

    return width_of_class


EXACT_PATTERNS = tuple(n for n in builders.REBUILDABLE if n != "shuffle_layers")


@pytest.mark.parametrize("line", builders.LINES)
@pytest.mark.parametrize("name", EXACT_PATTERNS)
def test_every_pattern_prunes_dead_channels_exactly(name, line):
    model = randomize(builders.build(name, line))
    kill_dropped(model, _drop_evenly(_widths_for(model, 0.5)))
    _check_exact(model, 0.5)


def test_resnet20_dead_channels_pruned_exactly():
    model = randomize(tf_precrop.models.resnet20())
    kill_dropped(model, _drop_evenly(_widths_for(model, 0.5)))
    _check_exact(model, 0.5)


def test_shufflenet_v2_branch_channels_and_refusal():
    model = randomize(
        tf_precrop.models.shufflenet_v2(
            input_shape=(32, 32, 3), classes=10, stem="cifar", width=0.5
        )
    )
    graph = channel_groups(model)
    # The groups inside each branch (conv1 → dw) are pruned; the stage groups,
    # whose halves a shuffle and split interleave unit after unit, stay.
    inner = {g.key: g.width // 2 for g in graph.free_groups if g.key.endswith("_conv1")}
    assert inner
    kill_dropped(model, _drop_evenly(_widths_for(model, inner)))
    _check_exact(model, inner)
    # Halving everything cannot keep the split halves exact: refused, naming a layer.
    with pytest.raises((UnsupportedLayerError, WidthError), match="'stage"):
        tf_precrop.prune(model, widths=0.5)


@pytest.mark.parametrize(
    "widths",
    [{"stage2_block1_conv2": 16, "stage2_block4_conv2": 12}, {"stage4_block1_conv2": 48}],
)
def test_shufflenet_v2_stage_groups(widths):
    # A stage group runs through shuffle → split → concat unit after unit: each
    # split halves what the previous shuffle interleaved, so a producer early in
    # the stage keeps an equal share of every nested part (16 of 24 = 2 of each
    # 3 in 8 parts). Such widths prune exactly; others are refused (see above).
    model = randomize(
        tf_precrop.models.shufflenet_v2(input_shape=(32, 32, 3), classes=10, stem="cifar", width=0.5)
    )
    kill_dropped(model, _drop_evenly(_widths_for(model, widths)))
    _check_exact(model, widths)


def test_shufflenet_v2_down_unit_and_first_split_prune():
    model = randomize(
        tf_precrop.models.shufflenet_v2(
            input_shape=(32, 32, 3), classes=10, stem="cifar", width=0.5
        )
    )
    # The stem feeds the first down unit's two branches: free, exact.
    graph = channel_groups(model)
    stem = graph.free_groups[0]
    widths = {stem.key: stem.width // 2}
    kill_dropped(model, _drop_evenly(_widths_for(model, widths)))
    _check_exact(model, widths)


def test_per_channel_layers_keep_their_slices():
    k = _k("keras3")
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 1, name="c")(x)
    y = k.layers.PReLU(name="prelu")(y)
    y = k.layers.Conv2D(8, 1, name="d")(y)
    y = k.layers.LayerNormalization(name="ln")(y)
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    model = randomize(k.Model(x, k.layers.Dense(10, name="out")(y)))
    zero_out(model, "c", [0, 5])
    zero_in(model, "d", [0, 5])
    zero_out(model, "d", [2])
    zero_in(model, "out", [2])
    pruned = tf_precrop.prune(model, widths={"c": 6, "d": 7})
    for name, kept in (("prelu", [1, 2, 3, 4, 6, 7]), ("ln", [0, 1, 3, 4, 5, 6, 7])):
        for a, b in zip(
            pruned.get_layer(name).get_weights(), model.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b[..., kept])
    assert pruned.count_params() == tf_precrop.profile(model, {"c": 6, "d": 7}).params


def test_live_channels_change_the_output():
    # The exactness tests are not vacuous: pruning live channels changes the output.
    model = randomize(tf_precrop.models.resnet20())
    pruned = tf_precrop.prune(model, widths=0.5)
    assert relative_error(model, pruned, builders.sample_inputs(model)) > 1e-3


@pytest.fixture
def float64():
    import keras

    before, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")  # a policy set earlier would win over floatx
    yield
    keras.config.set_floatx(before)
    keras.config.set_dtype_policy(policy)


#: One model per keras.applications family of the compatibility sweep
#: (tests/builders.SWEEP_CASES), at the smallest input each accepts. ConvNeXt is
#: the exception: its LayerNormalization normalises over the channel axis, so its
#: statistics include the dead channels and removing them cannot be exact (see
#: docs/prune.md, Limits); test_keras_applications_prune covers it.
EXACT_APPLICATIONS = {
    "ResNet50": 64,
    "ResNet50V2": 64,
    "MobileNet": 64,
    "MobileNetV2": 64,
    "MobileNetV3Small": 64,
    "EfficientNetB0": 64,
    "EfficientNetV2B0": 64,
    "DenseNet121": 64,
    "Xception": 71,
    "InceptionV3": 75,
    "NASNetMobile": 64,
    "VGG16": 64,
}


def test_exactness_covers_every_sweep_family():
    families = {name for name, _ in builders.SWEEP_CASES}
    # ConvNeXt: see above; RegNetX002 (a tf_keras case): test_tf_keras_applications_dead_channels_pruned_exactly.
    assert families - set(EXACT_APPLICATIONS) == {"ConvNeXtTiny", "RegNetX002"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXACT_APPLICATIONS))
def test_keras_applications_dead_channels_pruned_exactly(name, float64):
    # float64: in float32, 50+ layers of reordered sums drift by ~1e-5 on their own.
    import keras

    build = getattr(keras.applications, name)
    size = EXACT_APPLICATIONS[name]
    kwargs = dict(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    model = randomize(build(**kwargs))
    assert model.layers[-1].compute_dtype == "float64"
    widths = 0.5  # NASNet: its cells' adds of a concatenation and a conv keep those groups whole
    kill_dropped(model, _drop_evenly(_widths_for(model, widths)))
    snap = snapshot(model)
    pruned = tf_precrop.prune(model, widths=widths)
    assert_unchanged(model, snap)
    x = builders.sample_inputs(model, seed=3).astype("float64")
    assert relative_error(model, pruned, x) <= TOL
    assert pruned.count_params() == tf_precrop.profile(model, widths).params


@pytest.fixture
def tf_keras_float64():
    k = builders.keras_of("tf_keras")
    before, policy = k.backend.floatx(), k.mixed_precision.global_policy()
    k.backend.set_floatx("float64")
    k.mixed_precision.set_global_policy("float64")
    yield
    k.backend.set_floatx(before)
    k.mixed_precision.set_global_policy(policy)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV2", "RegNetX002"])
def test_tf_keras_applications_dead_channels_pruned_exactly(name, tf_keras_float64):
    # RegNetX002: grouped convolutions (group width 8) in every block, each group keeps an equal share.
    # float64, as the Keras 3 test above: in float32 MobileNetV2's reordered sums alone drifted
    # to 2e-5 on one CPU (the same seed gave < 1e-5 on another).
    k = builders.keras_of("tf_keras")
    model = getattr(k.applications, name)(
        weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None
    )
    assert model.layers[-1].compute_dtype == "float64"
    model = randomize(model)
    kill_dropped(model, _drop_evenly(_widths_for(model, 0.5)))
    snap = snapshot(model)
    pruned = tf_precrop.prune(model, widths=0.5)
    assert_unchanged(model, snap)
    assert pruned.layers[-1].compute_dtype == "float64"
    x = builders.sample_inputs(model, seed=3).astype("float64")
    assert relative_error(model, pruned, x) <= TOL
    assert pruned.count_params() == tf_precrop.profile(model, 0.5).params
