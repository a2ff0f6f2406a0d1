"""Tests of tf_precrop.channel_groups: the exact channel groups of each graph pattern.

Each pattern comes from ``tests/builders.py`` and runs in both Keras lines.
A group is written ``(key, width, fixed, multiple_of, producers)``; tied
tensors show up as one group with several producers.
"""

import builders
import numpy as np
import pytest

import tf_precrop
from tf_precrop.errors import UnsupportedLayerError, UnsupportedModelError, WidthError


@pytest.fixture(params=builders.LINES)
def line(request):
    return request.param


def groups(graph):
    """``(key, width, fixed, multiple_of, producers)`` of every group, in graph order."""
    return [(g.key, g.width, g.fixed, g.multiple_of, g.producers) for g in graph]


def free(key, width, *others, multiple_of=1):
    """A free group produced by ``key`` (and the tied ``others``)."""
    return (key, width, False, multiple_of, (key, *others))


def fixed(key, width, multiple_of=1):
    return (key, width, True, multiple_of, (key,))


def node(graph, key):
    (found,) = [n for n in graph.layers if n.key == key]
    return found


IMAGE = fixed("image", 3)
OUT = fixed("out", 10)


# ------------------------------------------------------------------ patterns
def test_pass_through_chain_has_one_free_group_per_conv(line):
    graph = tf_precrop.channel_groups(builders.chain(line))
    assert groups(graph) == [IMAGE, free("c1", 8), free("c2", 12), OUT]
    for key in ("bn", "relu", "pool"):
        assert (node(graph, key).inputs, node(graph, key).outputs) == (("c1",), ("c1",))
    assert graph.widths() == {"image": 3, "c1": 8, "c2": 12, "out": 10}
    assert [g.key for g in graph.free_groups] == ["c1", "c2"]


def test_residual_add_ties_the_shortcut_and_the_branch_output(line):
    graph = tf_precrop.channel_groups(builders.residual(line))
    assert groups(graph) == [IMAGE, free("stem", 8, "b"), free("a", 6), free("c", 16), OUT]
    assert node(graph, "sum").inputs == ("stem", "stem")


def test_squeeze_excite_with_keepdims_pooling_ties_the_gate_to_the_gated_conv(line):
    graph = tf_precrop.channel_groups(builders.se_block(line))
    assert groups(graph) == [IMAGE, free("c", 16, "se_expand"), free("se_reduce", 4), OUT]
    assert node(graph, "excite").inputs == ("c", "c")


def test_squeeze_excite_with_a_reshape_to_1x1xc_ties_the_gate_to_the_gated_conv(line):
    graph = tf_precrop.channel_groups(builders.se_block_reshape(line))
    assert groups(graph) == [IMAGE, free("c", 16, "se_expand"), free("se_reduce", 4), OUT]
    assert node(graph, "se_reshape").outputs == ("c",)


def test_channel_concatenate_sums_its_parts_and_keeps_them_free(line):
    graph = tf_precrop.channel_groups(builders.concat_channels(line))
    assert groups(graph) == [IMAGE, free("a", 8), free("b", 4), free("c", 6), OUT]
    assert node(graph, "cat").outputs == ("a + b",)
    assert node(graph, "c").inputs == ("a + b",)
    # c's kernel is 3x3 x (a + b) x c: the concat width enters as a sum.
    assert node(graph, "c").kernel.evaluate({"a": 8, "b": 4, "c": 6}) == 9 * 12 * 6
    assert node(graph, "c").kernel.evaluate({"a": 2, "b": 1, "c": 6}) == 9 * 3 * 6


def test_concatenate_on_a_spatial_axis_ties_its_inputs(line):
    graph = tf_precrop.channel_groups(builders.concat_spatial(line))
    assert groups(graph) == [IMAGE, free("a", 8, "b"), free("c", 6), OUT]
    assert node(graph, "cat").outputs == ("a",)


def test_depthwise_with_depth_multiplier_two_doubles_its_input_group(line):
    graph = tf_precrop.channel_groups(builders.depthwise(line))
    assert groups(graph) == [IMAGE, free("a", 8), free("c", 6), OUT]
    assert node(graph, "dw").outputs == ("2*a",)
    assert node(graph, "c").inputs == ("2*a",)


def test_grouped_conv_with_four_groups_needs_multiples_of_four_on_both_sides(line):
    graph = tf_precrop.channel_groups(builders.grouped_conv(line))
    assert groups(graph) == [
        IMAGE,
        free("a", 8, multiple_of=4),
        free("g", 16, multiple_of=4),
        free("c", 6),
        OUT,
    ]


def test_conv_with_groups_equal_to_its_channels_acts_as_depthwise_tied_to_its_input(line):
    graph = tf_precrop.channel_groups(builders.groups_as_depthwise(line))
    assert groups(graph) == [IMAGE, free("a", 8), free("c", 6), OUT]
    assert (node(graph, "dwg").inputs, node(graph, "dwg").outputs) == (("a",), ("a",))


def test_separable_conv_opens_a_new_group(line):
    graph = tf_precrop.channel_groups(builders.separable(line))
    assert groups(graph) == [IMAGE, free("a", 8), free("sep", 16), OUT]


def test_conv1d_model_has_one_free_group_per_conv(line):
    graph = tf_precrop.channel_groups(builders.conv1d(line))
    assert groups(graph) == [fixed("signal", 3), free("c1", 8), free("c2", 12), OUT]


def test_conv_transpose_opens_a_new_group_and_the_image_output_is_fixed(line):
    graph = tf_precrop.channel_groups(builders.conv_transpose(line))
    assert groups(graph) == [IMAGE, free("down", 8), free("up", 4), fixed("out", 3)]


def test_flatten_scales_the_conv_group_by_the_spatial_size(line):
    graph = tf_precrop.channel_groups(builders.flatten_dense(line))
    assert groups(graph) == [IMAGE, free("c", 8), free("fc", 16), OUT]
    assert node(graph, "flat").outputs == ("36*c",)
    assert node(graph, "fc").params.evaluate({"c": 8, "fc": 16}) == 6 * 6 * 8 * 16 + 16


def test_shufflenet_split_and_shuffle_layers_tie_the_halves_of_each_unit(line):
    graph = tf_precrop.channel_groups(builders.shuffle_layers(line))
    assert groups(graph) == [
        IMAGE,
        free("stem", 8),
        free("p", 4, "q", "b1", multiple_of=2),
        free("b2", 4, multiple_of=2),
        free("c", 6),
        OUT,
    ]
    assert node(graph, "split1").outputs == ("p", "p")
    assert node(graph, "cat2").outputs == ("p + b2",)


def test_a_split_after_a_plain_conv_ties_the_branch_to_half_the_conv(line):
    # The second split ties b1 = stem / 2: one free group whose width stays
    # even, b1 among its producers.
    model = builders.split_after_conv(line)
    graph = tf_precrop.channel_groups(model)
    stem = graph["stem"]
    assert not stem.fixed and stem.width == 8 and stem.multiple_of == 2
    assert "b1" in stem.producers
    small = tf_precrop.rebuild(model, {"stem": 4})
    assert small.get_layer("b1").filters == 2
    assert small.count_params() == tf_precrop.profile(model, {"stem": 4}).params


def test_channel_split_of_a_concat_of_two_unequal_parts_is_accepted(line):
    k = builders.keras_of(line)
    split = builders._shuffle_layers_of(line).ChannelSplit
    x = k.Input((8, 8, 3), name="image")
    a = k.layers.Conv2D(2, 1, name="a")(x)
    b = k.layers.Conv2D(6, 1, name="b")(x)
    p, q = split(2, name="split")(k.layers.Concatenate(name="cat")([a, b]))
    y = k.layers.GlobalAveragePooling2D(name="gap")(k.layers.Add(name="sum")([p, q]))
    model = k.Model(x, k.layers.Dense(10, name="out")(y))
    graph = tf_precrop.channel_groups(model)
    assert graph["a"].width == 2 and graph["b"].width == 6


def test_reshape_permute_reshape_shuffle_keeps_both_halves_free_and_even(line):
    graph = tf_precrop.channel_groups(builders.shuffle_reshape(line))
    assert groups(graph) == [
        IMAGE,
        free("a", 4, multiple_of=2),
        free("b", 4, multiple_of=2),
        free("c", 6),
        OUT,
    ]
    assert node(graph, "merge_groups").outputs == ("a + b",)


def test_shuffle_reshape_layer_nodes_describe_their_channels_without_addresses(line):
    graph = tf_precrop.channel_groups(builders.shuffle_reshape(line))
    for key in ("split_groups", "swap", "merge_groups"):
        n = node(graph, key)
        assert not any(" at 0x" in text for text in n.inputs + n.outputs)


def test_mobilenet_nested_in_a_sequential_prefixes_its_groups_and_ties_its_residuals(line):
    model = builders.nested_mobilenet(line)
    graph = tf_precrop.channel_groups(model)
    inner = "mobilenetv2_0.35_32/"
    first, *middle, last = groups(graph)
    assert first[1:4] == (3, True, 1) and graph.groups[0].reason == "model input"
    assert last == OUT
    assert len(middle) == 25 and all(key.startswith(inner) for key, *_ in middle)
    assert [g.key for g in graph.free_groups] == [key for key, *_ in middle]
    by_key = {key: rest for key, *rest in middle}
    assert by_key[inner + "Conv1"] == [16, False, 1, (inner + "Conv1",)]
    assert by_key[inner + "Conv_1"] == [1280, False, 1, (inner + "Conv_1",)]
    assert by_key[inner + "block_3_project"] == [
        16,
        False,
        1,
        tuple(inner + f"block_{i}_project" for i in (3, 4, 5)),
    ]
    assert graph.cost() == model.count_params()


def test_functional_model_nested_in_a_functional_model_exposes_its_convs(line):
    graph = tf_precrop.channel_groups(builders.nested_functional(line))
    assert groups(graph) == [
        IMAGE,
        free("pre", 5),
        free("inner/i1", 8),
        free("inner/i2", 12),
        free("post", 6),
        OUT,
    ]
    assert node(graph, "inner/i1").inputs == ("pre",)


def test_two_inputs_and_two_outputs_are_all_fixed(line):
    graph = tf_precrop.channel_groups(builders.two_in_two_out(line))
    assert groups(graph) == [
        IMAGE,
        fixed("meta", 4),
        free("c", 8),
        free("meta_fc", 8),
        fixed("box", 4),
        fixed("cls", 10),
    ]
    assert node(graph, "join").outputs == ("c + meta_fc",)
    assert {graph["box"].reason, graph["cls"].reason} == {"model output"}


def test_a_layer_called_twice_ties_the_inputs_of_both_calls(line):
    model = builders.shared_layer(line)
    graph = tf_precrop.channel_groups(model)
    assert groups(graph) == [IMAGE, free("b", 8, "a"), free("shared", 6), OUT]
    assert node(graph, "cat").outputs == ("2*shared",)
    # One LayerNode for the shared layer; its weights count once.
    assert [n.key for n in graph.layers].count("shared") == 1
    assert graph.cost() == model.count_params()


def test_arithmetic_on_symbolic_tensors_is_element_wise(line):
    graph = tf_precrop.channel_groups(builders.ops(line))
    assert groups(graph) == [IMAGE, free("c", 8), free("post", 6), OUT]
    ops = [n for n in graph.layers if n.key not in ("c", "relu", "post", "gap", "out")]
    expected = ["Add", "Multiply"] if line == "keras3" else ["TFOpLambda", "TFOpLambda"]
    assert [n.class_name for n in ops] == expected
    assert [n.outputs for n in ops] == [("c",), ("c",)]


def test_a_channel_agnostic_lambda_passes_its_group_through(line):
    graph = tf_precrop.channel_groups(builders.lambda_agnostic(line))
    assert groups(graph) == [IMAGE, free("c", 8), free("post", 6), OUT]
    assert node(graph, "scale_shift").outputs == ("c",)


def test_a_lambda_whose_width_follows_its_input_is_refused_by_name(line):
    with pytest.raises(UnsupportedLayerError, match="'first_half'") as info:
        tf_precrop.channel_groups(builders.lambda_halves(line))
    assert "register_rule" in str(info.value)


def test_bundled_resnet20_ties_each_stage_through_its_shortcuts(line):
    model = tf_precrop.models.resnet20(line=line)
    graph = tf_precrop.channel_groups(model)
    conv2s = [f"stage1_block{b}_conv2" for b in (1, 2, 3)]
    assert groups(graph) == [
        fixed("image", 3),
        free("stem_conv", 16, *conv2s),
        *[free(f"stage1_block{b}_conv1", 16) for b in (1, 2, 3)],
        free("stage2_block1_conv1", 32),
        free(
            "stage2_block1_conv2",
            32,
            "stage2_block1_shortcut_conv",
            "stage2_block2_conv2",
            "stage2_block3_conv2",
        ),
        *[free(f"stage2_block{b}_conv1", 32) for b in (2, 3)],
        free("stage3_block1_conv1", 64),
        free(
            "stage3_block1_conv2",
            64,
            "stage3_block1_shortcut_conv",
            "stage3_block2_conv2",
            "stage3_block3_conv2",
        ),
        *[free(f"stage3_block{b}_conv1", 64) for b in (2, 3)],
        fixed("predictions", 10),
    ]
    assert graph.cost() == model.count_params() == 274_042


# ---------------------------------------------------------------- graph API
def test_graph_lookup_by_key_and_unknown_keys_raise_key_error():
    graph = tf_precrop.channel_groups(builders.chain())
    assert graph["c1"].width == 8
    assert len(graph) == 4
    with pytest.raises(KeyError, match="nope"):
        graph["nope"]


def test_resolve_widths_rounds_a_multiplier_to_each_groups_multiple():
    graph = tf_precrop.channel_groups(builders.grouped_conv())
    # a: 8 -> 4 (multiple of 4), g: 16 -> 8, c: 6 -> 3; fixed groups keep their width.
    assert graph.resolve_widths(0.5) == {"image": 3, "a": 4, "g": 8, "c": 3, "out": 10}
    # 0.1 rounds below one multiple: each group keeps at least one multiple.
    assert graph.resolve_widths(0.1) == {"image": 3, "a": 4, "g": 4, "c": 1, "out": 10}
    assert graph.resolve_widths({"c": 2}) == {"image": 3, "a": 8, "g": 16, "c": 2, "out": 10}
    assert graph.resolve_widths({"a": np.int64(12)})["a"] == 12


@pytest.mark.parametrize(
    "widths, match",
    [
        ({"image": 4}, "fixed"),
        ({"a": 6}, "multiple of 4"),
        ({"c": 0}, "positive"),
        ({"c": 2.0}, "integer"),
        ({"c": True}, "integer"),
        (0.0, "positive"),
        (-1.0, "positive"),
        (float("nan"), "positive"),
        ("half", "dict"),
    ],
)
def test_resolve_widths_refuses_widths_that_do_not_fit(widths, match):
    graph = tf_precrop.channel_groups(builders.grouped_conv())
    with pytest.raises(WidthError, match=match):
        graph.resolve_widths(widths)


def test_cost_of_the_current_widths_equals_count_params(line):
    model = builders.densenet_like(line)
    graph = tf_precrop.channel_groups(model)
    assert graph.cost(kind="params") == model.count_params()
    assert graph.cost({**graph.widths(), "stem": 4}, kind="params") < model.count_params()


def test_graph_summary_lists_every_group_and_its_status():
    text = tf_precrop.channel_groups(builders.grouped_conv()).summary()
    assert "fixed: model input" in text and "fixed: model output" in text
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["image", "a", "g", "c", "out"]


def test_walking_a_model_twice_gives_the_same_groups(line):
    model = builders.shuffle_layers(line)
    assert groups(tf_precrop.channel_groups(model)) == groups(tf_precrop.channel_groups(model))


# -------------------------------------------------------------------- errors
def test_a_subclassed_model_is_refused_as_subclassed(line):
    k = builders.keras_of(line)

    class Sub(k.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.dense = k.layers.Dense(4)

        def call(self, x):
            return self.dense(x)

    model = Sub()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedModelError, match="subclassed"):
        tf_precrop.channel_groups(model)
    with pytest.raises(TypeError):
        tf_precrop.channel_groups(model)


def test_an_unbuilt_sequential_is_refused_with_how_to_build_it(line):
    k = builders.keras_of(line)
    model = k.Sequential([k.layers.Dense(4, name="d")], name="unbuilt")
    with pytest.raises(UnsupportedModelError, match="'unbuilt'.*no known input shape"):
        tf_precrop.channel_groups(model)


def test_a_sequential_built_with_build_is_accepted(line):
    k = builders.keras_of(line)
    model = k.Sequential([k.layers.Dense(4, name="d"), k.layers.Dense(2, name="e")])
    model.build((None, 3))
    graph = tf_precrop.channel_groups(model)
    assert [(g.width, g.fixed) for g in graph] == [(3, True), (4, False), (2, True)]
    assert graph.free_groups[0].key == "d"


def test_a_non_keras_object_is_refused():
    with pytest.raises(UnsupportedModelError, match="Keras"):
        tf_precrop.channel_groups(object())


def test_an_unknown_custom_layer_names_itself_and_register_rule_then_passes(line):
    k = builders.keras_of(line)

    class MyLayer(k.layers.Layer):
        def call(self, x):
            return x * 2.0

    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 3, name="c")(x)
    y = MyLayer(name="mine")(y)
    y = k.layers.Conv2D(4, 1, name="post")(y)
    model = k.Model(x, y)
    with pytest.raises(UnsupportedLayerError, match="'mine'.*MyLayer") as info:
        tf_precrop.channel_groups(model)
    assert "register_rule" in str(info.value)
    tf_precrop.register_rule(MyLayer, "passthrough")
    try:
        graph = tf_precrop.channel_groups(model)
        assert groups(graph) == [IMAGE, free("c", 8), fixed("post", 4)]
        assert node(graph, "mine").outputs == ("c",)
    finally:
        tf_precrop.unregister_rule(MyLayer)
    with pytest.raises(UnsupportedLayerError, match="'mine'"):
        tf_precrop.channel_groups(model)


def test_register_rule_refuses_unknown_kinds_and_non_rules():
    with pytest.raises(ValueError, match="Unknown rule kind"):
        tf_precrop.register_rule("MyLayer", "sideways")
    with pytest.raises(TypeError, match="LayerRule"):
        tf_precrop.register_rule("MyLayer", object())


def test_unregistering_one_rule_keeps_other_overrides_of_builtin_layers():
    model = builders.residual()
    tf_precrop.register_rule("Add", "fixed")
    try:
        tf_precrop.register_rule("MyLayer", "passthrough")
        tf_precrop.unregister_rule("MyLayer")
        assert tf_precrop.channel_groups(model)["stem"].fixed
    finally:
        tf_precrop.unregister_rule("Add")


def test_unregistering_a_builtin_override_restores_the_builtin_rule():
    model = builders.residual()
    tf_precrop.register_rule("Add", "fixed")
    try:
        assert tf_precrop.channel_groups(model)["stem"].fixed
    finally:
        tf_precrop.unregister_rule("Add")
    assert not tf_precrop.channel_groups(model)["stem"].fixed


def test_channels_first_convs_are_refused(line):
    with pytest.raises(UnsupportedLayerError, match="'c'.*channels_first"):
        tf_precrop.channel_groups(builders.channels_first(line))


def test_a_normalization_over_a_spatial_axis_is_refused(line):
    k = builders.keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 3, name="c")(x)
    y = k.layers.BatchNormalization(axis=1, name="bn")(y)
    model = k.Model(x, y)
    with pytest.raises(UnsupportedLayerError, match="'bn'.*axis"):
        tf_precrop.channel_groups(model)
