"""Tests of tf_precrop.baselines: masked copies that stay masked."""

import keras
import numpy as np
import pytest

from tf_precrop.baselines import FixedMask, fixed_mask_class, mask_density, masked_model
from tf_precrop.saliency import compute_scores, prunable_kernels

L = keras.layers


def cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 8)),
            L.SeparableConv2D(8, 3, padding="same", name="sep"),
            L.BatchNormalization(name="bn"),
            L.ReLU(name="relu"),
        ],
        name="block",
    )
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(
        8, 3, padding="same", name="stem", kernel_constraint=keras.constraints.MaxNorm(100.0)
    )(x)
    h = inner(h)
    h = L.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(x, L.Dense(4, name="fc")(h))


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 3)).astype("float32"), rng.integers(0, 4, n)


def pruned_positions(model):
    return {key: [np.asarray(v.numpy()) == 0 for v in vs] for key, vs in prunable_kernels(model)}


@pytest.mark.parametrize("method", ["magnitude", "random", "snip", "grasp", "synflow"])
def test_masked_copy_density_and_original_untouched(method):
    model = cnn()
    before = [np.array(w, copy=True) for w in model.get_weights()]
    sparse = masked_model(model, method, 0.3, data=data(), seed=0, rounds=10, verbose=0)
    assert sparse is not model
    assert mask_density(sparse) == pytest.approx(0.3, abs=0.005)
    assert mask_density(model) == 1.0
    for a, b in zip(before, model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    # Same architecture and names; kept weights equal the original ones.
    assert [layer.name for layer in sparse.layers] == [layer.name for layer in model.layers]
    for (key, orig), (_, copy) in zip(
        prunable_kernels(model), prunable_kernels(sparse), strict=True
    ):
        for o, c in zip(orig, copy, strict=True):
            o, c = o.numpy(), c.numpy()
            assert np.array_equal(c[c != 0], o[c != 0]), key


def test_masks_follow_the_method_scores():
    model = cnn()
    scores = compute_scores(model, "magnitude")
    sparse = masked_model(model, "magnitude", 0.25, scores=scores)
    densities = scores.layer_densities(0.25)
    for key, variables in prunable_kernels(sparse):
        kept = sum(int(np.count_nonzero(v.numpy())) for v in variables)
        assert kept / scores.sizes[key] == pytest.approx(densities[key])
    with pytest.raises(ValueError, match="method='snip'"):
        masked_model(model, "snip", 0.25, scores=scores)


@pytest.mark.slow
def test_pruned_weights_stay_zero_through_training_and_save_load(tmp_path):
    model = cnn()
    sparse = masked_model(model, "random", 0.4, seed=1)
    zeros = pruned_positions(sparse)
    x, y = data(32)
    sparse.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    start = [v.numpy().copy() for _, vs in prunable_kernels(sparse) for v in vs]
    sparse.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = [v.numpy() for _, vs in prunable_kernels(sparse) for v in vs]
    assert any(not np.array_equal(a, b) for a, b in zip(start, after, strict=True))  # it trained
    for key, masks in pruned_positions(sparse).items():
        for now, then in zip(masks, zeros[key], strict=True):
            assert np.all(now[then]), key  # pruned weights are still exactly zero
    assert mask_density(sparse) == pytest.approx(0.4, abs=0.005)
    # The original constraint is kept inside the mask.
    stem = sparse.get_layer("stem").kernel_constraint
    assert isinstance(stem, FixedMask) and isinstance(stem.constraint, keras.constraints.MaxNorm)
    assert isinstance(sparse.get_layer("dw").depthwise_constraint, FixedMask)
    sep = sparse.get_layer("block").get_layer("sep")
    assert isinstance(sep.depthwise_constraint, FixedMask)
    assert isinstance(sep.pointwise_constraint, FixedMask)

    path = str(tmp_path / "sparse.keras")
    sparse.save(path)
    loaded = keras.models.load_model(path)
    for (key, a), (_, b) in zip(prunable_kernels(sparse), prunable_kernels(loaded), strict=True):
        for u, v in zip(a, b, strict=True):
            assert np.array_equal(u.numpy(), v.numpy()), key
    constraint = loaded.get_layer("dw").depthwise_constraint
    assert isinstance(constraint, FixedMask)
    # One class per line however it is asked for (a second class would take over the registry).
    assert fixed_mask_class() is fixed_mask_class("keras3") is FixedMask
    loaded.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for key, masks in pruned_positions(loaded).items():
        for now, then in zip(masks, zeros[key], strict=True):
            assert np.all(now[then]), key


def test_fixed_mask_config_round_trip():
    mask = np.random.default_rng(0).random((3, 3, 5, 7)) > 0.6
    c = FixedMask(mask, constraint=keras.constraints.NonNeg())
    again = FixedMask.from_config(c.get_config())
    assert np.array_equal(again.mask, mask)
    assert isinstance(again.constraint, keras.constraints.NonNeg)
    w = np.full(mask.shape, -1.0, "float32")
    np.testing.assert_array_equal(np.asarray(again(w)), np.zeros(mask.shape))
    assert again.density == pytest.approx(mask.mean())
    with pytest.raises(ValueError, match="shape"):
        c(np.ones((2, 2), "float32"))


def test_tf_keras_masked_model(tmp_path):
    import tf_keras

    TL = tf_keras.layers
    x = tf_keras.Input((8, 8, 3))
    h = TL.Conv2D(8, 3, name="conv")(x)
    h = TL.DepthwiseConv2D(3, name="dw")(h)
    h = TL.GlobalAveragePooling2D()(h)
    model = tf_keras.Model(x, TL.Dense(4, name="fc")(h))
    before = [np.array(w, copy=True) for w in model.get_weights()]
    sparse = masked_model(model, "synflow", 0.2, rounds=5, verbose=0)
    assert isinstance(sparse, tf_keras.Model)
    assert mask_density(sparse) == pytest.approx(0.2, abs=0.005)
    assert isinstance(sparse.get_layer("dw").depthwise_constraint, fixed_mask_class("tf_keras"))
    zeros = pruned_positions(sparse)
    xs, ys = data()
    sparse.compile(
        optimizer="adam", loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    sparse.fit(xs, ys, epochs=2, batch_size=8, verbose=0)
    for key, masks in pruned_positions(sparse).items():
        for now, then in zip(masks, zeros[key], strict=True):
            assert np.all(now[then]), key
    for a, b in zip(before, model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    path = str(tmp_path / "sparse_tfk.keras")
    sparse.save(path)
    loaded = tf_keras.models.load_model(path)
    assert mask_density(loaded) == pytest.approx(mask_density(sparse))


def test_mask_density_errors():
    model = keras.Sequential([keras.Input((3,)), L.Flatten()])
    with pytest.raises(ValueError, match="no prunable"):
        mask_density(model)
