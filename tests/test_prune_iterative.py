"""tf_precrop.prune_iteratively: K prune -> fine-tune steps, each budget against the input model.

Costs are checked with MACs counted by hand from the layers' kernel shapes and
output sizes (not tf_precrop.profile), and weights by where their values came
from: a fine-tune that scales every BatchNormalization gamma leaves a mark
that the next step's copy must carry.
"""

import re

import numpy as np
import pytest

import tf_precrop
from tests.builders import LINES, keras_of
from tests.prune_helpers import assert_unchanged, randomize, snapshot
from tf_precrop.prune.iterative import split_epochs, step_fractions


def _net(line="keras3"):
    k = keras_of(line)
    x = k.Input((16, 16, 3), name="image")
    y = k.layers.Conv2D(32, 3, padding="same", use_bias=False, name="c1")(x)
    y = k.layers.BatchNormalization(name="bn1")(y)
    y = k.layers.ReLU()(y)
    y = k.layers.Conv2D(48, 3, padding="same", use_bias=False, name="c2")(y)
    y = k.layers.BatchNormalization(name="bn2")(y)
    y = k.layers.ReLU()(y)
    y = k.layers.Conv2D(64, 3, strides=2, padding="same", use_bias=False, name="c3")(y)
    y = k.layers.BatchNormalization(name="bn3")(y)
    y = k.layers.ReLU()(y)
    y = k.layers.GlobalAveragePooling2D()(y)
    return randomize(k.Model(x, k.layers.Dense(10, name="out")(y), name="iter_net"))


def _macs(model):
    """Multiply-accumulates of the convs and the dense layer, from their shapes."""
    total = 0
    for name in ("c1", "c2", "c3"):
        layer = model.get_layer(name)
        kh, kw, cin, cout = layer.get_weights()[0].shape
        h, w = layer.output.shape[1:3]
        total += h * w * kh * kw * cin * cout
    cin, cout = model.get_layer("out").get_weights()[0].shape
    return total + cin * cout


@pytest.mark.parametrize("line", LINES)
def test_each_step_reaches_its_fraction_of_the_input_cost(line):
    model = _net(line)
    before = snapshot(model)
    dense = _macs(model)
    seen = []

    def fine_tune(m, step):
        seen.append((step, _macs(m) / dense, m.get_layer("c2").get_weights()[0].shape[-1]))

    final = tf_precrop.prune_iteratively(model, 0.25, 2, fine_tune, budget="macs", round_to=1)
    assert [s for s, _, _ in seen] == [1, 2]
    assert seen[0][1] == pytest.approx(0.5, abs=0.02)
    assert seen[1][1] == pytest.approx(0.25, abs=0.02)
    assert _macs(final) / dense == seen[1][1]
    assert seen[1][2] <= seen[0][2] < 48  # every step removes channels
    assert_unchanged(model, before)


def test_the_next_step_prunes_the_fine_tuned_weights():
    model = _net()
    gammas = {n: model.get_layer(n).get_weights()[0].copy() for n in ("bn1", "bn2", "bn3")}

    def double_gammas(m, step):  # trains "in place" and returns None, like fit()
        for n in gammas:
            layer = m.get_layer(n)
            w = layer.get_weights()
            layer.set_weights([w[0] * 2.0, *w[1:]])

    final = tf_precrop.prune_iteratively(model, 0.3, 3, double_gammas, budget="params", round_to=1)
    for n, original in gammas.items():
        kept = final.get_layer(n).get_weights()[0]
        # Three fine-tunes each doubled the gamma of every kept channel: 8x an original value.
        assert kept.size < original.size
        assert np.all(np.min(np.abs(kept[:, None] - 8.0 * original[None, :]), axis=1) == 0.0), n


def test_a_returned_model_is_the_one_the_next_step_prunes():
    model = _net()
    returned = []

    def replace(m, step):
        k = keras_of("keras3")
        copy = k.models.clone_model(m)
        copy.set_weights([w + 1.0 for w in m.get_weights()])
        returned.append(copy)
        return copy

    final = tf_precrop.prune_iteratively(model, 0.4, 2, replace, budget="macs", round_to=1)
    assert final is returned[-1]
    step1 = returned[0].get_layer("c1").get_weights()[0]
    kept = final.get_layer("c1").get_weights()[0] - 1.0  # undo the last step's +1
    # The last step kept a subset of the step-1 model's c1 filters (input channels all kept).
    columns = {tuple(np.round(step1[..., j].ravel(), 5)) for j in range(step1.shape[-1])}
    assert all(tuple(np.round(kept[..., j].ravel(), 5)) in columns for j in range(kept.shape[-1]))


def test_one_step_is_prune_then_one_fine_tune():
    model = _net()
    calls = []
    once = tf_precrop.prune_iteratively(model, 0.5, 1, lambda m, s: calls.append(s), budget="macs")
    direct = tf_precrop.prune(model, 0.5, budget="macs")
    assert calls == [1]
    assert tf_precrop.channel_groups(once).widths() == tf_precrop.channel_groups(direct).widths()
    for a, b in zip(once.get_weights(), direct.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_recalibration_runs_before_fine_tuning():
    model = _net()
    x = np.random.default_rng(0).normal(size=(128, 16, 16, 3)).astype("float32")
    means = []

    def look(m, step):
        means.append(m.get_layer("bn1").get_weights()[2].copy())

    tf_precrop.prune_iteratively(model, 0.5, 1, look, budget="macs", recalibrate_data=x, round_to=1)
    # bn1's moving mean is now the per-channel mean of its input (c1's output) on x.
    pruned_c1 = keras_of("keras3").Model(model.input, model.get_layer("c1").output)
    assert means[0].shape[0] < 32
    expected_all = pruned_c1.predict(x, verbose=0).mean(axis=(0, 1, 2))
    # Kept channels are a subset of c1's; each recalibrated mean is one of c1's channel means.
    assert np.all(np.min(np.abs(means[0][:, None] - expected_all[None, :]), axis=1) < 1e-4)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=1.5), ValueError, "steps"),
        (dict(steps=True), ValueError, "steps"),
        (dict(budget="latency"), ValueError, "in a loop"),
        (dict(target=1.5), ValueError, "(0, 1]"),
        (dict(target=0), ValueError, "(0, 1]"),
        (dict(fine_tune=None), TypeError, "fine_tune"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, error, words):
    args = dict(target=0.5, steps=2, fine_tune=lambda m, s: None, budget="macs")
    args.update(kwargs)
    with pytest.raises(error, match=re.escape(words)):
        tf_precrop.prune_iteratively(_net(), args.pop("target"), args.pop("steps"), args.pop("fine_tune"), **args)


@pytest.mark.parametrize("target,steps", [(0.2, 1), (0.2, 2), (0.5, 3), (0.1, 4)])
def test_step_fractions_multiply_to_the_target_in_equal_ratios(target, steps):
    fractions = step_fractions(target, steps)
    assert len(fractions) == steps and fractions[-1] == pytest.approx(target)
    ratios = [b / a for a, b in zip([1.0] + fractions, fractions, strict=False)]
    assert ratios == pytest.approx([ratios[0]] * steps)  # each step keeps the same share


@pytest.mark.parametrize("epochs,steps,expected", [(5, 1, [5]), (5, 2, [2, 3]), (6, 3, [2, 2, 2]),
                                                   (7, 3, [2, 2, 3]), (3, 3, [1, 1, 1])])
def test_split_epochs_keeps_the_total(epochs, steps, expected):
    assert split_epochs(epochs, steps) == expected
