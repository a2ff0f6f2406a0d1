"""Tests of tf_precrop.profile: exact parameter counts and hand-computed MACs.

MAC convention (tf_precrop/profile.py): one example, kernel layers only —
Conv per output position ``k·k·C_in/groups·C_out``, transposed Conv per
*input* position, DepthwiseConv ``k·k·C_out`` per output position,
SeparableConv depthwise plus pointwise, Dense per leading position; bias,
BN, activations, pooling and merges count zero.
"""

import json

import builders
import pytest

import tf_precrop


@pytest.fixture(params=builders.LINES)
def line(request):
    return request.param


def single_layer(line, input_shape, make_layer):
    """``Model(Input(input_shape) → layer)``; returns (model, layer)."""
    k = builders.keras_of(line)
    x = k.Input(input_shape, name="x")
    layer = make_layer(k.layers)
    return k.Model(x, layer(x)), layer


def row(profile, key):
    (found,) = [c for c in profile.layers if c.key == key]
    return found


def check_layer(line, input_shape, make_layer, macs):
    model, layer = single_layer(line, input_shape, make_layer)
    p = tf_precrop.profile(model)
    r = row(p, layer.name)
    assert (r.params, r.macs) == (layer.count_params(), macs)
    assert (p.params, p.macs) == (model.count_params(), macs)
    return layer


# ----------------------------------------------------------- MAC formulas
@pytest.mark.parametrize(
    "strides, padding, size, out",
    [(1, "same", 8, 8), (2, "same", 8, 4), (2, "valid", 9, 4), (1, "valid", 8, 6)],
)
def test_conv2d_macs_are_kernel_size_times_channels_per_output_position(
    strides, padding, size, out, line
):
    layer = check_layer(
        line,
        (size, size, 3),
        lambda L: L.Conv2D(8, 3, strides=strides, padding=padding, name="conv"),
        macs=out * out * (3 * 3 * 3 * 8),
    )
    assert layer.count_params() == 3 * 3 * 3 * 8 + 8


def test_grouped_conv2d_macs_divide_the_input_channels_by_the_groups(line):
    layer = check_layer(
        line,
        (8, 8, 8),
        lambda L: L.Conv2D(16, 3, groups=4, padding="same", name="conv"),
        macs=8 * 8 * (3 * 3 * (8 // 4) * 16),
    )
    assert layer.count_params() == 3 * 3 * 2 * 16 + 16


def test_conv1d_macs_are_kernel_size_times_channels_per_output_step(line):
    check_layer(
        line,
        (16, 3),
        lambda L: L.Conv1D(8, 3, strides=2, padding="same", use_bias=False, name="conv"),
        macs=8 * (3 * 3 * 8),
    )


@pytest.mark.parametrize("strides, out", [(1, 8), (2, 4)])
def test_depthwise_conv_macs_are_kernel_size_times_output_channels(strides, out, line):
    layer = check_layer(
        line,
        (8, 8, 8),
        lambda L: L.DepthwiseConv2D(
            3, strides=strides, depth_multiplier=2, padding="same", name="dw"
        ),
        macs=out * out * (3 * 3 * 8 * 2),
    )
    assert layer.count_params() == 3 * 3 * 16 + 16


@pytest.mark.parametrize("depth_multiplier, strides, out", [(1, 1, 8), (2, 2, 4)])
def test_separable_conv_macs_are_depthwise_plus_pointwise(depth_multiplier, strides, out, line):
    dm = depth_multiplier
    layer = check_layer(
        line,
        (8, 8, 8),
        lambda L: L.SeparableConv2D(
            16, 3, strides=strides, depth_multiplier=dm, padding="same", name="sep"
        ),
        macs=out * out * (3 * 3 * 8 * dm + 8 * dm * 16),
    )
    assert layer.count_params() == 3 * 3 * 8 * dm + 8 * dm * 16 + 16


def test_dense_macs_on_a_vector_are_inputs_times_units(line):
    layer = check_layer(line, (12,), lambda L: L.Dense(5, name="fc"), macs=12 * 5)
    assert layer.count_params() == 12 * 5 + 5


def test_dense_macs_on_a_sequence_count_every_leading_position(line):
    check_layer(line, (7, 12), lambda L: L.Dense(5, name="fc"), macs=7 * 12 * 5)


def test_conv_transpose_macs_are_counted_per_input_position(line):
    layer = check_layer(
        line,
        (4, 4, 8),
        lambda L: L.Conv2DTranspose(6, 3, strides=2, padding="same", name="up"),
        macs=4 * 4 * (3 * 3 * 8 * 6),
    )
    assert layer.output.shape[1:] == (8, 8, 6)
    assert layer.count_params() == 3 * 3 * 8 * 6 + 6


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda L: L.BatchNormalization(name="layer"),
        lambda L: L.ReLU(name="layer"),
        lambda L: L.MaxPooling2D(name="layer"),
        lambda L: L.GlobalAveragePooling2D(name="layer"),
        lambda L: L.ZeroPadding2D(name="layer"),
    ],
    ids=["batchnorm", "relu", "maxpool", "gap", "zeropad"],
)
def test_layers_without_kernels_cost_zero_macs(make_layer, line):
    model, layer = single_layer(line, (8, 8, 4), make_layer)
    r = row(tf_precrop.profile(model), "layer")
    assert (r.params, r.macs) == (layer.count_params(), 0)


def test_a_shared_layer_counts_its_macs_per_call_and_its_params_once(line):
    model = builders.shared_layer(line)
    p = tf_precrop.profile(model)
    shared = row(p, "shared")
    assert shared.macs == 2 * 8 * 8 * (3 * 3 * 8 * 6)
    assert shared.params == 3 * 3 * 8 * 6 + 6
    assert p.params == model.count_params()


def test_resnet20_macs_equal_the_layer_by_layer_formula(line):
    model = tf_precrop.models.resnet20(line=line)
    conv = 3 * 3
    expected = (
        32 * 32 * conv * 3 * 16  # stem
        + 6 * 32 * 32 * conv * 16 * 16  # stage 1
        + 16 * 16 * conv * 16 * 32  # stage 2, first conv (stride 2)
        + 5 * 16 * 16 * conv * 32 * 32
        + 16 * 16 * 16 * 32  # stage 2 projection shortcut
        + 8 * 8 * conv * 32 * 64  # stage 3, first conv (stride 2)
        + 5 * 8 * 8 * conv * 64 * 64
        + 8 * 8 * 32 * 64  # stage 3 projection shortcut
        + 64 * 10  # classifier
    )
    p = tf_precrop.profile(model)
    assert p.macs == expected == 40_813_184
    assert p.params == model.count_params() == 274_042


# ---------------------------------------------------------- totals, widths
@pytest.mark.parametrize("pattern", builders.REBUILDABLE)
def test_profile_totals_equal_count_params_exactly(pattern, line):
    model = builders.build(pattern, line)
    p = tf_precrop.profile(model)
    assert p.params == model.count_params()
    assert p.params == sum(c.params for c in p.layers)
    assert p.macs == sum(c.macs for c in p.layers)
    assert p.name == model.name


@pytest.mark.parametrize("name", ["resnet56", "shufflenet_v2", "mobilenet_v2_cifar"])
def test_bundled_model_profile_equals_count_params_exactly(name, line):
    kwargs = dict(input_shape=(32, 32, 3), classes=10, width=0.5, stem="cifar")
    model = (
        tf_precrop.models.shufflenet_v2(line=line, **kwargs)
        if name == "shufflenet_v2"
        else getattr(tf_precrop.models, name)(line=line)
    )
    assert tf_precrop.profile(model).params == model.count_params()


def test_widths_predict_the_cost_of_the_chain_by_hand(line):
    model = builders.chain(line)
    p = tf_precrop.profile(model, {"c1": 4})
    c1 = 3 * 3 * 3 * 4 + 4
    bn = 4 * 4  # gamma, beta, moving mean, moving variance
    c2 = 3 * 3 * 4 * 12 + 12
    out = 12 * 10 + 10
    assert p.params == c1 + bn + c2 + out == 702
    assert p.macs == 8 * 8 * (3 * 3 * 3 * 4) + 4 * 4 * (3 * 3 * 4 * 12) + 12 * 10
    assert p.params == tf_precrop.rebuild(model, {"c1": 4}).count_params()


def test_a_multiplier_predicts_the_same_as_the_widths_it_resolves_to(line):
    model = builders.residual(line)
    graph = tf_precrop.channel_groups(model)
    by_multiplier = tf_precrop.profile(model, 0.5, graph=graph)
    by_widths = tf_precrop.profile(model, graph.resolve_widths(0.5))
    assert by_multiplier == by_widths
    # Checked against the built model: its own parameter count, and MACs
    # counted from its layers' configs and shapes (not the graph's polynomials).
    built = tf_precrop.rebuild(model, 0.5)
    assert by_multiplier.params == built.count_params()
    assert by_multiplier.macs == builders.independent_macs(built)


def test_profile_without_widths_equals_profile_with_the_current_widths(line):
    model = builders.concat_channels(line)
    graph = tf_precrop.channel_groups(model)
    assert tf_precrop.profile(model) == tf_precrop.profile(model, graph.widths())
    assert tf_precrop.profile(model, 1.0) == tf_precrop.profile(model)


# ------------------------------------------------------------------ reports
def test_to_json_round_trips_through_the_json_module(tmp_path):
    p = tf_precrop.profile(builders.chain())
    text = p.to_json()
    data = json.loads(text)
    assert data == p.to_dict()
    assert (data["name"], data["params"], data["macs"]) == ("chain", p.params, p.macs)
    assert [layer["key"] for layer in data["layers"]] == [c.key for c in p.layers]
    assert set(data["layers"][0]) == {"key", "class_name", "params", "macs"}
    path = tmp_path / "profile.json"
    assert p.to_json(path) == text
    assert json.loads(path.read_text(encoding="utf-8")) == data


def test_summary_lists_the_costly_layers_and_the_total():
    p = tf_precrop.profile(builders.chain())
    text = p.summary()
    for key in ("c1", "bn", "c2", "out", "total"):
        assert key in text
    assert "relu" not in text and "pool" not in text
    assert f"{p.params:,}" in text and f"{p.macs:,}" in text
    assert "\x1b[" not in text  # plain text, no colour codes
    assert "relu" in p.summary(only_costly=False)


def test_str_states_the_totals():
    p = tf_precrop.profile(builders.chain())
    assert str(p) == f"Profile(chain: {p.params:,} params, {p.macs:,} MACs)"
