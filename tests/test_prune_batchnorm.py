"""tf_precrop.recalibrate_batchnorm: BatchNormalization statistics measured again on data.

The checks are independent of the implementation's cumulative-momentum trick:
the first BN's moving mean is compared with the per-channel mean of its input
computed in numpy from a sub-model, and the whole chain is checked by the
defining property of re-estimation on a single batch: inference with the
stored statistics equals training mode (batch statistics) on that batch.
"""

import numpy as np
import pytest

import tf_precrop
from tests.builders import LINES, keras_of


def _net(line, nested=False, frozen=False):
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(6, 3, padding="same", name="c1")(x)
    y = k.layers.BatchNormalization(name="bn1")(y)
    y = k.layers.ReLU(name="r1")(y)
    if nested:
        inner_in = k.Input((8, 8, 6), name="inner_in")
        z = k.layers.Conv2D(5, 3, padding="same", name="c2")(inner_in)
        z = k.layers.BatchNormalization(name="bn2")(z)
        y = k.Model(inner_in, z, name="inner")(y)
    else:
        y = k.layers.Conv2D(5, 3, padding="same", name="c2")(y)
        y = k.layers.BatchNormalization(name="bn2")(y)
    y = k.layers.ReLU(name="r2")(y)
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    model = k.Model(x, k.layers.Dense(4, name="out")(y), name="bn_net")
    rng = np.random.default_rng(1)
    for layer in _bns(model):
        # Stored statistics far from the truth, as after pruning.
        c = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(3.0, 1.0, c).astype("float32"))
        layer.moving_variance.assign(rng.uniform(5.0, 9.0, c).astype("float32"))
    if frozen:
        model.get_layer("bn1").trainable = False
    return model


def _bns(model):
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers"):
            out += _bns(layer)
        elif type(layer).__name__ == "BatchNormalization":
            out.append(layer)
    return out


def _data(n, seed=0):
    return np.random.default_rng(seed).normal(0.5, 2.0, size=(n, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize("nested", [False, True])
def test_one_batch_makes_inference_equal_training(line, nested):
    model = _net(line, nested=nested)
    x = _data(32)
    before = np.asarray(model(x, training=False))
    reference = np.asarray(model(x, training=True))
    assert np.max(np.abs(before - reference)) > 0.1  # the stored statistics are wrong
    returned = tf_precrop.recalibrate_batchnorm(model, x, batch_size=32)
    assert returned is model
    after = np.asarray(model(x, training=False))
    # Keras 3 stores the biased batch variance; tf_keras's fused kernel the unbiased
    # one (n/(n-1) with n = 32*8*8 values per channel), hence the looser bound.
    rtol = 1e-4 if line == "keras3" else 2e-3
    np.testing.assert_allclose(after, reference, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("line", LINES)
def test_moving_mean_is_the_mean_over_full_batches(line):
    k = keras_of(line)
    model = _net(line)
    x = _data(70, seed=3)  # 2 full batches of 32; the last 6 samples are dropped
    tf_precrop.recalibrate_batchnorm(model, (x, np.zeros(70)), batch_size=32)
    conv1 = k.Model(model.input, model.get_layer("c1").output)
    feats = np.asarray(conv1(x[:64]))  # conv1 has no BN before it: same in both modes
    np.testing.assert_allclose(
        model.get_layer("bn1").moving_mean.numpy(), feats.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5
    )
    # Moving variance: the mean of the two batches' own variances.
    per_batch = [feats[i * 32:(i + 1) * 32].var(axis=(0, 1, 2)) for i in range(2)]
    expected = np.mean(per_batch, axis=0)
    n = 32 * 8 * 8
    if line == "tf_keras":
        expected = expected * n / (n - 1)
    np.testing.assert_allclose(model.get_layer("bn1").moving_variance.numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("line", LINES)
def test_frozen_layers_and_momentum_are_kept(line):
    model = _net(line, frozen=True)
    frozen = model.get_layer("bn1")
    kept_mean = frozen.moving_mean.numpy().copy()
    old_mean2 = model.get_layer("bn2").moving_mean.numpy().copy()
    tf_precrop.recalibrate_batchnorm(model, _data(64), batch_size=32)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), kept_mean)
    assert not np.allclose(model.get_layer("bn2").moving_mean.numpy(), old_mean2)
    assert [layer.momentum for layer in _bns(model)] == pytest.approx([0.99, 0.99])


def test_fewer_samples_than_a_batch_use_one_smaller_batch():
    model = _net("keras3")
    x = _data(10)
    reference = np.asarray(model(x, training=True))
    tf_precrop.recalibrate_batchnorm(model, x, batch_size=128)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), reference, rtol=1e-4, atol=1e-4)


def test_samples_limit_reads_only_that_many():
    model = _net("keras3")
    x = _data(96, seed=5)
    tf_precrop.recalibrate_batchnorm(model, x, batch_size=32, samples=32)
    k = keras_of("keras3")
    feats = np.asarray(k.Model(model.input, model.get_layer("c1").output)(x[:32]))
    np.testing.assert_allclose(
        model.get_layer("bn1").moving_mean.numpy(), feats.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5
    )


def test_pruned_model_recalibrates_and_input_model_is_untouched():
    model = tf_precrop.models.resnet20()
    snapshot = [w.copy() for w in model.get_weights()]
    small = tf_precrop.prune(model, widths=0.5)
    x = _data(16).repeat(4, axis=1).repeat(4, axis=2)  # 32x32
    reference = np.asarray(small(x, training=True))
    tf_precrop.recalibrate_batchnorm(small, x, batch_size=16)
    np.testing.assert_allclose(np.asarray(small(x, training=False)), reference, rtol=1e-3, atol=1e-3)
    for a, b in zip(snapshot, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_errors_name_the_problem():
    k = keras_of("keras3")
    x = k.Input((4,))
    plain = k.Model(x, k.layers.Dense(2)(x), name="no_bn")
    with pytest.raises(ValueError, match="'no_bn' has no trainable BatchNormalization"):
        tf_precrop.recalibrate_batchnorm(plain, np.zeros((4, 4), "float32"))
    model = _net("keras3")
    with pytest.raises(ValueError, match="batch_size=0"):
        tf_precrop.recalibrate_batchnorm(model, _data(4), batch_size=0)
    with pytest.raises(ValueError, match="samples=True"):
        tf_precrop.recalibrate_batchnorm(model, _data(4), samples=True)
