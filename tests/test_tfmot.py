"""TFMOT interop: QAT export, unstructured pruning, and the tf_keras-only guard.

TFMOT is imported lazily by the helpers; the last test checks that using it
here does not switch later Keras 3 work in the same process to legacy Keras.
"""

import os
import sys

import numpy as np
import pytest

from tf_precrop.export import (
    INT8_MIN_TOP1,
    export_tflite,
    prune_unstructured_tfmot,
    qat_finetune_and_export,
    quantize_aware,
    verify_tflite,
)
from tf_precrop.export import tfmot as tfmot_module


def small_cnn(k, seed=0):
    """conv/BN/ReLU/depthwise/add/GAP/dense on a 32x32x3 input."""
    k.utils.set_random_seed(seed)
    inputs = k.Input((32, 32, 3), name="image")
    h = k.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    h = k.layers.BatchNormalization()(h)
    h = k.layers.ReLU()(h)
    d = k.layers.DepthwiseConv2D(3, padding="same")(h)
    d = k.layers.BatchNormalization()(d)
    d = k.layers.ReLU()(d)
    d = k.layers.Conv2D(16, 1)(d)
    h = k.layers.ReLU()(k.layers.Add()([h, d]))
    h = k.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(h)
    h = k.layers.GlobalAveragePooling2D()(h)
    return k.Model(inputs, k.layers.Dense(10)(h))


@pytest.fixture(scope="module")
def tf_keras_model():
    import tf_keras

    return small_cnn(tf_keras)


@pytest.fixture(scope="module")
def keras3_model():
    import keras

    return small_cnn(keras)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    prototypes = rng.uniform(0.0, 1.0, (10, 32, 32, 3))
    labels = rng.integers(0, 10, 128)
    images = prototypes[labels] + 0.3 * rng.standard_normal((128, 32, 32, 3))
    return images.astype("float32"), labels


def _kernels(model):
    return {
        w.name: w.numpy()
        for layer in model.layers
        for w in layer.weights
        if w.name.split("/")[-1].startswith(("kernel", "depthwise_kernel"))
    }


@pytest.mark.parametrize(
    "call",
    [
        lambda m: quantize_aware(m),
        lambda m: prune_unstructured_tfmot(m, 0.5),
        lambda m: qat_finetune_and_export(m, np.zeros((2, 32, 32, 3)), np.zeros(2), "x.tflite"),
    ],
    ids=["quantize_aware", "prune_unstructured_tfmot", "qat_finetune_and_export"],
)
def test_tfmot_helpers_reject_a_keras3_model_with_a_tf_keras_hint(keras3_model, call):
    with pytest.raises(TypeError, match=r"needs a tf_keras.*line=\"tf_keras\""):
        call(keras3_model)


def test_missing_tfmot_install_gives_the_pip_hint(tf_keras_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_model_optimization", None)
    with pytest.raises(ImportError, match=r'pip install "tf_precrop\[tfmot\]"'):
        quantize_aware(tf_keras_model)


@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_unstructured_pruning_gives_the_requested_sparsity_in_stripped_kernels(
    tf_keras_model, sparsity
):
    dense_before = _kernels(tf_keras_model)
    pruned = prune_unstructured_tfmot(tf_keras_model, sparsity)
    kernels = _kernels(pruned)
    # TFMOT prunes Conv2D and Dense kernels; DepthwiseConv2D is in its
    # registry without prunable weights.
    pruned_kernels = {k: v for k, v in kernels.items() if "depthwise" not in k}
    assert len(pruned_kernels) == 4
    for name, kernel in pruned_kernels.items():
        assert abs(np.mean(kernel == 0) - sparsity) <= 0.01, name
    assert not any("prune_low_magnitude" in layer.name for layer in pruned.layers)
    # The caller's model keeps its dense weights.
    for name, kernel in _kernels(tf_keras_model).items():
        np.testing.assert_array_equal(kernel, dense_before[name])
        assert np.mean(kernel == 0) == 0.0


def test_pruned_model_keeps_the_surviving_weights_and_exports(tf_keras_model, tmp_path):
    pruned = prune_unstructured_tfmot(tf_keras_model, 0.5)
    for before, after in zip(
        _kernels(tf_keras_model).values(), _kernels(pruned).values(), strict=True
    ):
        kept = after != 0
        np.testing.assert_array_equal(after[kept], before[kept])
        # Magnitude pruning: every kept weight is at least as large as any dropped one.
        if (~kept).any():
            assert np.abs(before[kept]).min() >= np.abs(before[~kept]).max()
    result = export_tflite(pruned, tmp_path / "pruned.tflite", num_verify_samples=8)
    assert result.relative_error <= 1e-4


def test_pruning_rejects_a_sparsity_outside_unit_interval(tf_keras_model):
    with pytest.raises(ValueError, match="Received: sparsity=1.0"):
        prune_unstructured_tfmot(tf_keras_model, 1.0)


def test_qat_finetune_produces_a_verified_int8_file(tf_keras_model, data, tmp_path):
    images, labels = data
    path = tmp_path / "qat.tflite"
    qat, result = qat_finetune_and_export(tf_keras_model, images, labels, path, epochs=1)
    assert any(layer.name.startswith("quant_") for layer in qat.layers)
    assert result.quantize == "int8" and result.size_bytes == os.path.getsize(path) > 0
    assert result.top1_agreement >= INT8_MIN_TOP1
    # With calibrated ranges the int8 file tracks the QAT model closely.
    assert result.relative_error < 0.05
    assert verify_tflite(path, qat, images[:16]).quantize == "int8"


def test_qat_range_calibration_narrows_the_initial_ranges(tf_keras_model, data):
    qat = quantize_aware(tf_keras_model)
    pairs = tfmot_module._moving_average_ranges(qat, tfmot_module._import_tfmot())
    assert pairs and all(float(np.max(hi.numpy())) == 6.0 for _, hi in pairs)
    assert tfmot_module.calibrate_qat_ranges(qat, data[0]) == len(pairs)
    for lo, hi in pairs:
        assert np.all(lo.numpy() <= 0.0) and np.all(hi.numpy() >= 0.0)
        assert np.all(hi.numpy() - lo.numpy() < 12.0)


def test_using_tfmot_does_not_switch_the_process_to_legacy_keras(tf_keras_model, tmp_path):
    import keras

    quantize_aware(tf_keras_model)
    assert "tensorflow_model_optimization" in sys.modules
    assert os.environ.get("TF_USE_LEGACY_KERAS") in (None, "0", "false", "False")
    model = small_cnn(keras, seed=2)
    result = export_tflite(model, tmp_path / "k3.tflite", num_verify_samples=8)
    assert result.relative_error <= 1e-4


def test_qat_keeps_unsupported_preprocessing_layers_float_and_verifies(tmp_path):
    import tf_precrop

    model = tf_precrop.models.resnet20(line="tf_keras", normalize=True)
    small = tf_precrop.crop(model, 0.3, verbose=0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 64)
    qat, result = qat_finetune_and_export(small, x, y, str(tmp_path / "q.tflite"), epochs=1)
    names = {layer.name for layer in qat.layers}
    assert "input_rescale" in names and "input_normalize" in names  # not wrapped
    assert result.quantize == "int8" and result.top1_agreement >= 0.95
