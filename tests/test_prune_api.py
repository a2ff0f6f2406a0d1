"""tf_precrop.prune: importance criteria, budgets, plans, custom rules, errors, CLI."""

import argparse
import warnings

import builders
import keras
import numpy as np
import pytest
from prune_helpers import randomize, relative_error, zero_in, zero_out

import tf_precrop
from tf_precrop.errors import BudgetWarning, UnsupportedLayerError, WidthError
from tf_precrop.graph import LayerRule
from tf_precrop.graph.rules import PassThroughRule
from tf_precrop.prune.selection import rank_keep


def _dense_model(col_values, out_rows=None):
    """Input(3) → Dense a(4, no bias) → Dense out(2, no bias) with given columns of a."""
    x = keras.Input((3,), name="x")
    y = keras.layers.Dense(4, use_bias=False, name="a")(x)
    model = keras.Model(x, keras.layers.Dense(2, use_bias=False, name="out")(y))
    model.get_layer("a").set_weights([np.asarray(col_values, dtype="float32").T])
    rows = np.zeros((4, 2), "float32") if out_rows is None else np.asarray(out_rows, "float32")
    model.get_layer("out").set_weights([rows])
    return model


# Columns of a: l1 (mean |w|) = [1, 0, 2/3, 1]; l2 (RMS) = [1, 0, 2/sqrt(3), 1].
COLUMNS = [[1, 1, 1], [0, 0, 0], [2, 0, 0], [-1, 1, -1]]


def _kept_columns(pruned):
    kernel = pruned.get_layer("a").get_weights()[0].T
    return [next(i for i, c in enumerate(COLUMNS) if np.allclose(c, k)) for k in kernel]


@pytest.mark.parametrize(
    ("importance", "width", "kept"),
    [
        ("l1", 3, [0, 2, 3]),  # the zero column goes first
        ("l1", 2, [0, 3]),
        ("l1", 1, [0]),  # a tie (0 and 3): the lower index stays
        ("l2", 1, [2]),  # the RMS ranks [2, 0, 0] above [1, 1, 1]
        ("l2", 3, [0, 2, 3]),
    ],
)
def test_importance_known_answers(importance, width, kept):
    model = _dense_model(COLUMNS)
    pruned = tf_precrop.prune(model, widths={"a": width}, importance=importance)
    assert _kept_columns(pruned) == kept


def test_consumer_slices_count_too():
    # Equal producer columns; the consumer's rows decide: row 2 is the largest.
    model = _dense_model([[1, 1, 1]] * 4, out_rows=[[0, 0], [1, 1], [3, 3], [2, 2]])
    pruned = tf_precrop.prune(model, widths={"a": 2})
    np.testing.assert_array_equal(pruned.get_layer("out").get_weights()[0], [[3, 3], [2, 2]])


def test_rank_keep_orders_and_parts():
    assert rank_keep(np.array([0.5, 0.0, 0.5, 0.9]), 2).tolist() == [0, 3]
    assert rank_keep(np.zeros(4), 2).tolist() == [0, 1]
    assert rank_keep(np.array([1, 2, 3, 4, 4, 3, 2, 1.0]), 4, parts=2).tolist() == [2, 3, 4, 5]
    with pytest.raises(WidthError, match="multiple of 2"):
        rank_keep(np.ones(8), 3, parts=2)


def _bn_model():
    x = keras.Input((8, 8, 3), name="x")
    y = keras.layers.Conv2D(4, 1, name="c")(x)
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, keras.layers.Dense(2, name="out")(y))


def test_bn_scale_keeps_largest_gamma():
    model = randomize(_bn_model())
    bn = model.get_layer("bn")
    w = bn.get_weights()
    w[0] = np.array([0.1, -3.0, 0.0, 2.0], "float32")
    bn.set_weights(w)
    pruned = tf_precrop.prune(model, widths={"c": 2}, importance="bn_scale")
    np.testing.assert_array_equal(pruned.get_layer("bn").get_weights()[0], [-3.0, 2.0])


def test_bn_scale_without_batch_norm_is_an_error():
    with pytest.raises(ValueError, match="BatchNormalization.*'a'"):
        tf_precrop.prune(_dense_model(COLUMNS), widths={"a": 2}, importance="bn_scale")


def test_taylor_drops_dead_channels_and_needs_data():
    model = randomize(_bn_model())
    zero_out(model, "c", [1])
    zero_in(model, "out", [1])
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((8, 8, 8, 3)).astype("float32"), rng.integers(0, 2, 8))
    pruned = tf_precrop.prune(model, widths={"c": 3}, importance="taylor", data=data)
    x = builders.sample_inputs(model)
    with pytest.raises(ValueError, match="needs labelled data"):
        tf_precrop.prune(model, widths={"c": 3}, importance="taylor")
    # Channel 1 is dead and BN's beta feeds nothing: the pruned model computes the same.
    bn = model.get_layer("bn")
    w = bn.get_weights()
    w[1][1] = 0
    bn.set_weights(w)
    pruned = tf_precrop.prune(model, widths={"c": 3}, importance="taylor", data=data)
    assert relative_error(model, pruned, x) <= 1e-5


def test_random_is_seeded():
    model = randomize(tf_precrop.models.resnet20())
    a = tf_precrop.prune(model, widths=0.5, importance="random", seed=3)
    b = tf_precrop.prune(model, widths=0.5, importance="random", seed=3)
    x = builders.sample_inputs(model)
    assert relative_error(a, b, x) == 0


# -------------------------------------------------------------- budgets, plans
@pytest.mark.parametrize("widths_from", ["synexp", "importance"])
def test_budget_fraction_on_resnet20(widths_from):
    model = randomize(tf_precrop.models.resnet20())
    pruned = tf_precrop.prune(model, 0.5, budget="params", widths_from=widths_from)
    assert abs(pruned.count_params() / model.count_params() - 0.5) <= 0.01


@pytest.mark.parametrize("widths_from", ["synexp", "importance"])
def test_shufflenet_v2_budget(widths_from):
    # Stage groups get the multiples their nested splits need (or stay whole).
    model = randomize(
        tf_precrop.models.shufflenet_v2(input_shape=(32, 32, 3), classes=10, stem="cifar", width=0.5)
    )
    pruned = tf_precrop.prune(model, 0.5, budget="macs", widths_from=widths_from)
    ratio = tf_precrop.profile(pruned).macs / tf_precrop.profile(model).macs
    assert abs(ratio - 0.5) <= 0.01


@pytest.mark.slow
def test_mobilenet_v2_macs_budget():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10)
    pruned = tf_precrop.prune(model, 0.5, budget="macs")
    ratio = tf_precrop.profile(pruned).macs / tf_precrop.profile(model).macs
    assert abs(ratio - 0.5) <= 0.01


def test_plan_json_prunes_a_trained_model():
    model = randomize(tf_precrop.models.resnet20())
    plan = tf_precrop.plan(tf_precrop.models.resnet20(), 0.5)
    loaded = tf_precrop.Plan.from_json(plan.to_json())
    pruned = loaded.apply(model, keep_weights=True)
    assert pruned.count_params() == plan.params[1]
    via_prune = tf_precrop.prune(model, loaded)
    x = builders.sample_inputs(model)
    assert relative_error(pruned, via_prune, x) == 0
    # The kept kernels are columns of the trained kernels.
    before = model.get_layer(model.layers[1].name).get_weights()[0]
    after = pruned.get_layer(model.layers[1].name).get_weights()[0]
    for j in range(after.shape[-1]):
        assert any(np.array_equal(after[..., j], before[..., i]) for i in range(before.shape[-1]))
    with pytest.raises(TypeError, match="keep_weights=True"):
        loaded.apply(model, importance="l2")


# --------------------------------------------------------------- custom rules
@keras.saving.register_keras_serializable("test_prune")
class ChannelScale(keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


def _scaled_model():
    x = keras.Input((8, 8, 3), name="x")
    y = keras.layers.Conv2D(6, 1, name="c")(x)
    y = ChannelScale(name="scale")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, keras.layers.Dense(2, name="out")(y))


def test_custom_layer_is_sliced_by_its_rule():
    tf_precrop.register_rule(ChannelScale, PassThroughRule())
    try:
        model = randomize(_scaled_model())
        zero_out(model, "c", [0, 4])
        pruned = tf_precrop.prune(model, widths={"c": 4})
        kept = [1, 2, 3, 5]
        np.testing.assert_array_equal(
            pruned.get_layer("scale").get_weights()[0],
            model.get_layer("scale").get_weights()[0][kept],
        )
        assert relative_error(model, pruned, builders.sample_inputs(model)) <= 1e-5
    finally:
        tf_precrop.unregister_rule(ChannelScale)


class _NoSlice(PassThroughRule):
    slice_weights = LayerRule.slice_weights


class _NoMap(PassThroughRule):
    map_channels = LayerRule.map_channels


@pytest.mark.parametrize(
    ("rule", "method"), [(_NoSlice(), "slice_weights"), (_NoMap(), "map_channels")]
)
def test_custom_rule_without_the_method_is_refused(rule, method):
    tf_precrop.register_rule(ChannelScale, rule)
    try:
        with pytest.raises(UnsupportedLayerError, match=f"'scale'.*{method}"):
            tf_precrop.prune(randomize(_scaled_model()), widths={"c": 4})
    finally:
        tf_precrop.unregister_rule(ChannelScale)


# --------------------------------------------------------------------- errors
def test_argument_errors():
    model = _dense_model(COLUMNS)
    with pytest.raises(TypeError, match="exactly one of"):
        tf_precrop.prune(model)
    with pytest.raises(TypeError, match="exactly one of"):
        tf_precrop.prune(model, 0.5, widths=0.5)
    # A string is a latency target ("3.5ms"); with another budget it is refused by name.
    with pytest.raises(tf_precrop.errors.BudgetError, match="target='half'"):
        tf_precrop.prune(model, "half")
    with pytest.raises(tf_precrop.errors.LatencyError, match="target='half'"):
        tf_precrop.prune(model, "half", budget="latency")
    with pytest.raises(TypeError, match="Received: target of type list"):
        tf_precrop.prune(model, [0.5])
    with pytest.raises(ValueError, match="importance='nope'"):
        tf_precrop.prune(model, widths=0.5, importance="nope")
    with pytest.raises(ValueError, match="widths_from='nope'"):
        tf_precrop.prune(model, 0.5, widths_from="nope")
    with pytest.raises(ValueError, match="round_to=0"):
        tf_precrop.prune(model, 0.5, round_to=0)
    with pytest.raises(WidthError, match="grow"):
        tf_precrop.prune(model, widths={"a": 8})


def test_shuffle_units_refused_with_the_layer_name():
    model = builders.build("shuffle_layers")
    with pytest.raises((UnsupportedLayerError, WidthError), match="'p'|'split"):
        tf_precrop.prune(model, widths=0.5)


# ------------------------------------------------------------------------ CLI
def test_cli_command(tmp_path, capsys):
    from tf_precrop.prune.cli import add_prune_command, run_prune

    model = randomize(_bn_model())
    path = tmp_path / "m.keras"
    model.save(path)
    parser = argparse.ArgumentParser()
    add_prune_command(parser.add_subparsers(dest="command"))
    out = tmp_path / "small.keras"
    args = parser.parse_args(["prune", str(path), "--widths", '{"c": 2}', "--out", str(out)])
    assert run_prune(args) == 0
    small = keras.saving.load_model(out)
    assert small.get_layer("c").filters == 2
    assert "wrote" in capsys.readouterr().out
    args = parser.parse_args(["prune", str(path), "--target", "0.6", "--out", str(out)])
    with warnings.catch_warnings():  # 42 parameters: 60% ± 1% is out of reach
        warnings.simplefilter("ignore", BudgetWarning)
        assert run_prune(args) == 0
    assert "params" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["prune", str(path), "--target", "0.5", "--widths", "0.5"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ConvNeXtTiny", "DenseNet121", "MobileNetV3Small"])
def test_keras_applications_prune(name):
    # LayerScale + LayerNorm (ConvNeXt), dense concatenations, hard-swish SE.
    model = getattr(keras.applications, name)(weights=None, input_shape=(64, 64, 3), classes=10)
    pruned = tf_precrop.prune(model, widths=0.5)
    assert pruned.count_params() == tf_precrop.profile(model, 0.5).params
    assert pruned(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 10)


def test_the_prune_verb_of_the_cli_keeps_weights_and_exports_a_verified_tflite(tmp_path, capsys):
    from tf_precrop.cli import main

    model = randomize(_bn_model())
    path = tmp_path / "trained.keras"
    model.save(path)
    out = tmp_path / "small.keras"
    assert main(["prune", str(path), "--widths", '{"c": 2}', "--out", str(out), "--tflite"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "small.tflite" in printed and "verified" in printed
    small = keras.saving.load_model(out)
    assert small.get_layer("c").filters == 2
    assert (tmp_path / "small.tflite").stat().st_size > 0
    # Kept channels keep their trained weights: each kept filter is one of the
    # original filters (in index order), and the BatchNorm and the dense layer
    # keep the same channels.
    kernel = model.get_layer("c").kernel.numpy()
    kept = small.get_layer("c").kernel.numpy()
    idx = [int(np.flatnonzero(np.all(kernel == kept[..., [j]], axis=(0, 1, 2)))[0])
           for j in range(kept.shape[-1])]
    assert len(idx) == 2 and idx == sorted(idx)
    np.testing.assert_array_equal(small.get_layer("bn").get_weights()[0],
                                  model.get_layer("bn").get_weights()[0][idx])
    np.testing.assert_array_equal(small.get_layer("out").kernel.numpy(),
                                  model.get_layer("out").kernel.numpy()[idx])


def _macs_table(graph):
    """A latency table whose conv/dense points cost 1e-6 ms per MAC (other kinds 0)."""
    import math

    from tf_precrop.latency import LatencyTable, fingerprint, probes_of

    table = LatencyTable(num_threads=2, precision="fp32", overhead_ms=0.0)
    dense_total = 0.0
    for probe, grids in probes_of(graph):
        spec = probe.spec
        for point in table.missing(probe.signature, grids):
            if probe.kind == "conv":
                out = [math.ceil(d / s) for d, s in zip(spec["spatial"], spec["strides"], strict=True)]
                ms = 1e-6 * math.prod(spec["kernel"]) * math.prod(out) * point[0] * point[1]
            elif probe.kind == "dense":
                ms = 1e-6 * point[0] * point[1]
            else:
                ms = 0.0
            table.add(probe.signature, point, ms)
        w0 = graph.widths()
        at = tuple(int(e.evaluate(w0)) for e in probe.axes)
        dense_total += table.get(probe.signature, at)
    table.add_model(fingerprint(graph), graph.model.name, dense_total)  # constant 0
    return table


def _conv_dense_macs(model):
    """Conv2D and Dense MACs read off the built layers (kernel size × output positions)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            h, w = layer.output.shape[1:3]
            total += int(np.prod(layer.kernel.shape)) * h * w
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def test_latency_budget_prunes_to_the_predicted_latency():
    # With 1e-6 ms per conv/dense MAC and a zero constant, half the predicted
    # latency is half the conv+dense MACs, counted here from the pruned layers.
    model = randomize(tf_precrop.models.resnet20())
    table = _macs_table(tf_precrop.channel_groups(model))
    pruned = tf_precrop.prune(model, 0.5, budget="latency", latency=table)
    ratio = _conv_dense_macs(pruned) / _conv_dense_macs(model)
    assert abs(ratio - 0.5) <= 0.02
    plan = tf_precrop.plan(model, 0.5, budget="latency", latency=table)
    assert plan.latency_ms[1] == pytest.approx(1e-6 * _conv_dense_macs(plan.apply()), rel=1e-9)
    with pytest.raises(tf_precrop.errors.LatencyError, match="int8"):
        tf_precrop.prune(model, 0.5, budget="latency", latency=table, precision="int8")


def test_taylor_on_a_model_compiled_with_a_one_hot_loss_and_integer_labels():
    # A model trained on one-hot targets keeps CategoricalCrossentropy in its
    # compile config; Taylor scores on integer labels one-hot encode them, and
    # match the scores of the same model compiled with the sparse loss.
    model = randomize(tf_precrop.models.resnet20(width=0.25))
    x = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 10
    sparse = keras.models.clone_model(model)
    sparse.set_weights(model.get_weights())
    model.compile(loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    sparse.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    a = tf_precrop.prune(model, 0.5, importance="taylor", data=(x, y))
    b = tf_precrop.prune(sparse, 0.5, importance="taylor", data=(x, y))
    for la, lb in zip(a.layers, b.layers, strict=True):
        for wa, wb in zip(la.get_weights(), lb.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb)
