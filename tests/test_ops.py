"""Keras 3 ops in functional models get the rules of their layer twins."""

import keras
import numpy as np
import pytest

import tf_precrop


def _concat_net(use_op):
    x = keras.Input((16, 16, 3), name="image")
    a = keras.layers.Conv2D(16, 3, padding="same", name="a")(x)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(x)
    if use_op:
        y = keras.ops.concatenate([a, b], axis=-1)
    else:
        y = keras.layers.Concatenate(axis=-1, name="cat")([a, b])
    y = keras.layers.Conv2D(32, 1, name="c")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, keras.layers.Dense(10, name="head")(y))


def _groups(model):
    return [(g.key, g.width, g.fixed) for g in tf_precrop.channel_groups(model)]


def test_ops_concatenate_on_channels_crops_like_the_concatenate_layer():
    op_net, layer_net = _concat_net(True), _concat_net(False)
    assert _groups(op_net) == _groups(layer_net)
    graph = tf_precrop.channel_groups(op_net)
    # "c" reads a+b channels: 1x1 kernel (16+8)*32 + 32 bias, counted from the sum.
    c = next(n for n in graph.layers if n.key == "c")
    assert c.params.evaluate({**graph.widths(), "a": 4, "b": 2}) == (4 + 2) * 32 + 32
    p_op = tf_precrop.plan(op_net, 0.5, budget="params", round_to=1)
    p_layer = tf_precrop.plan(layer_net, 0.5, budget="params", round_to=1)
    assert p_op.widths == p_layer.widths
    small = p_op.apply()
    assert small.count_params() == p_op.params[1]
    assert small.get_layer("c").kernel.shape[2] == p_op.widths["a"] + p_op.widths["b"]


def test_ops_split_mean_and_max_over_space_keep_channel_groups():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(16, 3, padding="same", name="conv")(x)
    left, right = keras.ops.split(y, 2, axis=-1)
    m = keras.ops.mean(left, axis=[1, 2])
    n = keras.ops.max(right, axis=(1, 2))
    z = keras.layers.Concatenate(name="cat")([m, n])
    model = keras.Model(x, keras.layers.Dense(4, name="head")(z))
    graph = tf_precrop.channel_groups(model)
    conv = graph["conv"]
    assert (conv.width, conv.fixed, conv.multiple_of) == (16, False, 2)
    half = tf_precrop.rebuild(model, {"conv": 8})
    assert half.get_layer("head").kernel.shape == (8, 4)
    x_in = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    assert half(x_in).shape == (2, 4)


def test_a_reduction_over_the_channel_axis_is_still_refused_with_the_fix():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(16, 3, name="conv")(x)
    y = keras.ops.mean(y, axis=-1, keepdims=True)
    model = keras.Model(x, keras.layers.Flatten()(y))
    with pytest.raises(ValueError, match="register_rule"):
        tf_precrop.channel_groups(model)
