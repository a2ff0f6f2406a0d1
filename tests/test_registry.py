"""The layer registry is the single extension point: a class registered once is
costed, scored by every saliency method, linearised by SynFlow and rebuilt."""

import keras
import numpy as np
import pytest

import tf_precrop
from tf_precrop.graph.rules import (
    LINEARIZATIONS,
    ConvRule,
    LayerRule,
    PassThroughRule,
    prunable_classes,
    rule_of,
)
from tf_precrop.saliency import PRUNABLE_KERNELS, compute_scores, prunable_kernels


class CustomConv(keras.layers.Conv2D):
    """A user's conv-like layer: a Conv2D subclass the registry does not know."""


def _custom_model():
    x = keras.Input((16, 16, 3))
    y = CustomConv(16, 3, padding="same", name="c1")(x)
    y = keras.layers.BatchNormalization(name="bn1")(y)
    y = keras.layers.ReLU(name="r1")(y)
    y = CustomConv(32, 3, padding="same", name="c2")(y)
    y = keras.layers.ReLU(name="r2")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, keras.layers.Dense(10, name="dense")(y))


@pytest.fixture
def custom_conv_registered():
    tf_precrop.register_rule(CustomConv, ConvRule())
    yield
    tf_precrop.unregister_rule(CustomConv)


def _weights(model):
    return [w.copy() for w in model.get_weights()]


@pytest.mark.parametrize("method", ["synexp", "synflow", "snip", "magnitude"])
def test_a_custom_conv_registered_with_the_conv_rule_crops_with_every_method(
    custom_conv_registered, method
):
    keras.utils.set_random_seed(0)
    model = _custom_model()
    before = _weights(model)
    x = np.random.default_rng(0).uniform(0, 1, (16, 16, 16, 3)).astype("float32")
    y = np.arange(16) % 10
    data = (x, y) if method == "snip" else None
    plan = tf_precrop.plan(model, 0.4, budget="params", method=method, data=data, verbose=0,
                           rounds=10, round_to=1)
    small = plan.apply()
    # The custom layers were scored and resized like Conv2D: their widths shrink ...
    assert {layer.key for layer in plan.layers} == {"c1", "c2", "dense"}
    assert small.get_layer("c1").filters < 16 and small.get_layer("c2").filters < 32
    assert type(small.get_layer("c1")) is CustomConv
    # ... and the exact budget holds on the built model.
    assert plan.within_tolerance
    assert abs(small.count_params() - 0.4 * model.count_params()) <= 0.01 * 0.4 * model.count_params()
    assert small.count_params() == plan.params[1]
    # The user's model is untouched.
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_scores_of_a_registered_custom_conv_match_the_same_net_built_with_conv2d(
    custom_conv_registered,
):
    # The same weights in a Conv2D net give the same SynFlow and magnitude scores:
    # the registry, not the class, decides how a layer is scored.
    keras.utils.set_random_seed(1)
    custom = _custom_model()
    plain = keras.models.clone_model(
        custom,
        clone_function=lambda layer: keras.layers.Conv2D.from_config(layer.get_config())
        if isinstance(layer, CustomConv)
        else layer.__class__.from_config(layer.get_config()),
    )
    plain.set_weights(custom.get_weights())
    for method in ("synflow", "magnitude"):
        a = compute_scores(custom, method, target_density=0.3, rounds=5, verbose=0)
        b = compute_scores(plain, method, target_density=0.3, rounds=5, verbose=0)
        assert sorted(a.per_layer) == sorted(b.per_layer) == ["c1", "c2", "dense"]
        for key in a.per_layer:
            np.testing.assert_allclose(a.per_layer[key], b.per_layer[key], rtol=1e-6)


def test_an_unregistered_custom_conv_is_not_prunable_and_the_message_says_how_to_register():
    model = _custom_model()
    assert [key for key, _ in prunable_kernels(model)] == ["dense"]
    with pytest.raises(ValueError, match=r"register_rule\(cls, ConvRule\(\)\)") as info:
        compute_scores(model, "magnitude", layers=["c1"])
    assert "Received: unknown keys ['c1']" in str(info.value)


def test_prunable_kernels_is_a_live_view_of_the_registry(custom_conv_registered):
    assert PRUNABLE_KERNELS["CustomConv"] == ("kernel",)
    assert PRUNABLE_KERNELS["SeparableConv2D"] == ("depthwise_kernel", "pointwise_kernel")
    assert "BatchNormalization" not in PRUNABLE_KERNELS
    assert dict(PRUNABLE_KERNELS) == dict(prunable_classes())


def test_prunable_kernels_from_the_graph_equal_those_from_the_model():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    graph = tf_precrop.channel_groups(model)
    from_model = [(k, [v.path for v in vs]) for k, vs in prunable_kernels(model)]
    from_graph = [(k, [v.path for v in vs]) for k, vs in prunable_kernels(graph)]
    assert from_graph == from_model
    assert len(from_model) == 53  # 35 pointwise/1x1 convs, 17 depthwise, 1 dense
    assert sum(1 for _, vs in from_model if "depthwise" in vs[0]) == 17


def test_synflow_refuses_a_rule_that_refuses_linearisation_and_names_the_layer():
    class Refuses(PassThroughRule):
        linearization = "refuse"

    class Gate(keras.layers.Layer):
        def call(self, x):
            return x * keras.ops.sigmoid(x)

    tf_precrop.register_rule(Gate, Refuses())
    try:
        x = keras.Input((8, 8, 3))
        y = keras.layers.Conv2D(8, 3, name="c")(x)
        y = Gate(name="gate")(y)
        y = keras.layers.GlobalAveragePooling2D()(y)
        model = keras.Model(x, keras.layers.Dense(2, name="d")(y))
        with pytest.raises(TypeError, match="Layer 'gate' \\(Gate\\) has a rule that refuses"):
            compute_scores(model, "synflow", target_density=0.5, rounds=2, verbose=0)
        # Other methods still score it: only SynFlow needs a linearisation.
        assert sorted(compute_scores(model, "magnitude").per_layer) == ["c", "d"]
    finally:
        tf_precrop.unregister_rule(Gate)


def test_register_rule_rejects_an_unknown_linearization():
    class Odd(LayerRule):
        linearization = "sideways"

    with pytest.raises(ValueError, match="linearization='sideways'"):
        tf_precrop.register_rule("Odd", Odd())
    assert rule_of(keras.layers.ReLU()).linearization == "identity"
    assert rule_of(keras.layers.BatchNormalization()).linearization == "batch_norm"
    assert rule_of(keras.layers.LayerNormalization()).linearization == "affine"
    assert set(LINEARIZATIONS) == {"as_is", "identity", "batch_norm", "affine", "refuse"}
