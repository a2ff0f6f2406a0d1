"""TFLite/LiteRT export, verification and latency (Keras 3 and tf_keras)."""

import dataclasses
import os
import tempfile

import numpy as np
import pytest

import tf_precrop
from tf_precrop import errors
from tf_precrop.errors import ExportError, ExportPathError
from tf_precrop.export import (
    INT8_MIN_TOP1,
    TOLERANCES,
    TFLiteExport,
    TFLiteLatency,
    benchmark_tflite,
    export_tflite,
    verify_tflite,
)
from tf_precrop.export import tflite as tflite_module
from tf_precrop.export import verify as verify_module

LINES = ("keras3", "tf_keras")


def _keras(line):
    if line == "keras3":
        import keras

        return keras
    import tf_keras

    return tf_keras


def small_cnn(line, seed=0):
    """conv/BN/ReLU/depthwise/add/GAP/dense on a 32x32x3 input."""
    k = _keras(line)
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
    return k.Model(inputs, k.layers.Dense(10)(h), name=f"small_cnn_{line}")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0.0, 1.0, (64, 32, 32, 3)).astype("float32")


@pytest.fixture(scope="module", params=LINES)
def line_model(request):
    return request.param, small_cnn(request.param)


@pytest.fixture(scope="module")
def keras3_model():
    return small_cnn("keras3")


@pytest.fixture(scope="module")
def fp32_file(tmp_path_factory, keras3_model):
    path = tmp_path_factory.mktemp("fp32") / "model.tflite"
    export_tflite(keras3_model, path)
    return path


# ------------------------------------------------------------------- exports
@pytest.mark.parametrize("quantize", [None, "float16", "dynamic", "int8"])
def test_export_verifies_within_tolerance_for_each_quantization(
    line_model, quantize, images, tmp_path
):
    line, model = line_model
    path = tmp_path / f"{line}_{quantize}.tflite"
    result = export_tflite(
        model,
        path,
        quantize=quantize,
        representative_data=images if quantize == "int8" else None,
    )
    assert isinstance(result, TFLiteExport)
    assert result.path == str(path) and path.is_file()
    assert result.size_bytes == os.path.getsize(path) > 0
    assert result.quantize == quantize
    assert result.num_samples == 64
    assert 0.0 <= result.relative_error <= TOLERANCES[quantize]
    assert result.max_abs_error >= 0.0
    if quantize == "int8":
        assert result.top1_agreement >= INT8_MIN_TOP1
    # The file really is what was asked for: verify_tflite reads the mode back.
    assert verify_tflite(path, model, images[:8]).quantize == quantize


def test_export_counts_decisive_samples_like_a_direct_litert_run(
    keras3_model, images, tmp_path
):
    """num_decisive and decisive_top1_agreement, recomputed from LiteRT outputs."""
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "int8.tflite"
    held_back = images[:32]
    result = export_tflite(
        keras3_model, path, quantize="int8", representative_data=images,
        verification_data=held_back, num_verify_samples=32,
    )
    keras_out = np.asarray(keras3_model(held_back, training=False))
    interpreter = Interpreter(model_path=str(path))
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], held_back.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], held_back)
    interpreter.invoke()
    lite_out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    top2 = np.sort(keras_out, axis=1)[:, -2:]
    sure = (top2[:, 1] - top2[:, 0]) >= 0.05 * max(1.0, float(np.abs(keras_out).max()))
    agree = [
        lite_out[i, np.argmax(keras_out[i])] >= lite_out[i].max() for i in range(32)
    ]
    assert sure.any(), "the seeded model should have decisive samples"
    assert result.num_samples == 32 and result.num_decisive == int(sure.sum())
    assert result.decisive_top1_agreement == pytest.approx(np.mean(np.array(agree)[sure]))


def test_export_without_verification_has_no_decisive_samples(keras3_model, tmp_path):
    result = export_tflite(keras3_model, tmp_path / "m.tflite", verify=False)
    assert result.num_decisive == 0 and result.decisive_top1_agreement is None


def test_quantized_files_are_smaller_than_float32(keras3_model, images, tmp_path):
    sizes = {
        q: export_tflite(
            keras3_model,
            tmp_path / f"{q}.tflite",
            quantize=q,
            representative_data=images if q == "int8" else None,
            verify=False,
        ).size_bytes
        for q in (None, "float16", "int8")
    }
    assert sizes["int8"] < sizes["float16"] < sizes[None]


def test_export_result_is_frozen_and_serializable(keras3_model, tmp_path):
    result = export_tflite(keras3_model, tmp_path / "m.tflite", num_verify_samples=4)
    as_dict = result.to_dict()
    assert as_dict["path"] == result.path and as_dict["num_samples"] == 4
    assert set(as_dict) == {f.name for f in dataclasses.fields(TFLiteExport)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.size_bytes = 0


def test_export_without_verify_reports_no_errors(keras3_model, tmp_path):
    result = export_tflite(keras3_model, tmp_path / "m.tflite", verify=False)
    assert result.size_bytes > 0
    assert result.max_abs_error is None and result.top1_agreement is None
    assert result.num_samples == 0


def test_int8_io_gives_an_integer_file_that_still_verifies(keras3_model, images, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "io.tflite"
    result = export_tflite(
        keras3_model, path, quantize="int8", representative_data=images, int8_io=True
    )
    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert result.top1_agreement >= INT8_MIN_TOP1


def test_int8_accepts_a_dataset_of_labelled_batches(images, tmp_path):
    import tensorflow as tf

    model = small_cnn("tf_keras", seed=3)
    labels = np.zeros(len(images), dtype="int64")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    result = export_tflite(
        model, tmp_path / "ds.tflite", quantize="int8", representative_data=dataset
    )
    assert result.num_samples == 64 and result.top1_agreement >= INT8_MIN_TOP1


def test_int8_accepts_a_generator_function(keras3_model, images, tmp_path):
    def batches():
        for start in range(0, 32, 8):
            yield images[start : start + 8]

    result = export_tflite(
        keras3_model, tmp_path / "gen.tflite", quantize="int8", representative_data=batches
    )
    assert result.num_samples == 32


def test_int8_without_representative_data_is_a_clear_error(keras3_model, tmp_path):
    with pytest.raises(ValueError, match="representative_data"):
        export_tflite(keras3_model, tmp_path / "m.tflite", quantize="int8")
    assert not list(tmp_path.iterdir())


def test_unknown_quantization_mode_is_rejected(keras3_model, tmp_path):
    with pytest.raises(ValueError, match="Received: quantize='int4'"):
        export_tflite(keras3_model, tmp_path / "m.tflite", quantize="int4")


def test_multi_input_model_is_matched_by_input_name(tmp_path):
    import keras

    keras.utils.set_random_seed(1)
    a = keras.Input((8,), name="features")
    b = keras.Input((4, 4, 2), name="patch")
    h = keras.layers.Concatenate()([keras.layers.Dense(6)(a), keras.layers.Flatten()(b)])
    model = keras.Model([a, b], [keras.layers.Dense(3)(h), keras.layers.Dense(1)(h)])
    path = tmp_path / "two.tflite"
    result = export_tflite(model, path, num_verify_samples=16)
    assert result.num_samples == 16 and result.relative_error <= TOLERANCES[None]
    rng = np.random.default_rng(5)
    inputs = {
        "patch": rng.standard_normal((5, 4, 4, 2)).astype("float32"),
        "features": rng.standard_normal((5, 8)).astype("float32"),
    }
    report = verify_tflite(path, model, inputs)
    assert report.passed and report.num_samples == 5


# --------------------------------------------------------------- verification
def test_verify_against_a_model_with_other_weights_raises(fp32_file):
    other = small_cnn("keras3", seed=7)
    with pytest.raises(ExportError, match="does not match"):
        verify_tflite(fp32_file, other)


def test_verify_without_strict_returns_the_failed_report(fp32_file):
    report = verify_tflite(fp32_file, small_cnn("keras3", seed=7), strict=False)
    assert not report.passed and report.relative_error > TOLERANCES[None]


def _logits(rng, n, classes, margin):
    """Logits whose top-1 leads the runner-up by exactly ``margin``."""
    e = rng.uniform(-1.0, 0.0, size=(n, classes))
    top = rng.integers(classes, size=n)
    second = np.max(np.where(np.eye(classes, dtype=bool)[top], -np.inf, e), axis=-1)
    e[np.arange(n), top] = second + margin
    return e.astype("float32"), top


def test_int8_gate_ignores_flips_of_near_ties():
    rng = np.random.default_rng(0)
    near, top = _logits(rng, 40, 10, margin=0.001)  # 0.1 % of scale 1: noise-level
    sure, _ = _logits(rng, 60, 10, margin=0.5)
    got_near = near.copy()
    got_near[np.arange(40), top] -= 0.01  # every near tie flips, error 0.01
    e, g = np.concatenate([near, sure]), np.concatenate([got_near, sure])
    report = verify_module._compare("f", "int8", [e], [g], TOLERANCES["int8"], strict=True)
    assert report.passed and report.top1_agreement == pytest.approx(0.6)
    assert report.decisive_top1_agreement == 1.0 and report.num_decisive == 60
    # The same flips are a failure where the tolerance is tight.
    with pytest.raises(ExportError, match="relative error"):
        verify_module._compare("f", None, [e], [g], TOLERANCES[None], strict=True)


def test_int8_gate_fails_on_flips_of_decisive_samples():
    rng = np.random.default_rng(1)
    e, top = _logits(rng, 100, 10, margin=0.06)  # decisive: 0.06 >= 0.05 * max(1, scale)
    g = e.copy()
    g[np.arange(6), top[:6]] -= 0.09  # 6 % flipped, error 0.09 < tolerance 0.1
    report = verify_module._compare("f", "int8", [e], [g], TOLERANCES["int8"], strict=False)
    assert not report.passed and report.relative_error < TOLERANCES["int8"]
    assert report.num_decisive == 100 and report.decisive_top1_agreement == pytest.approx(0.94)
    with pytest.raises(ExportError, match="on its 100 decisive samples"):
        verify_module._compare("f", "int8", [e], [g], TOLERANCES["int8"], strict=True)


def test_int8_gate_checks_relative_error_of_classifier_outputs_too():
    rng = np.random.default_rng(2)
    e, _ = _logits(rng, 50, 10, margin=0.5)
    g = e + np.where(np.arange(10) == 0, 0.0, 0.3).astype("float32")  # no flip, error 0.3
    report = verify_module._compare("f", "int8", [e], [g], TOLERANCES["int8"], strict=False)
    assert not report.passed and report.relative_error == pytest.approx(0.3, rel=1e-5)


def test_int8_gate_without_decisive_samples_reports_none():
    rng = np.random.default_rng(3)
    e, _ = _logits(rng, 20, 10, margin=0.0)
    report = verify_module._compare("f", "int8", [e], [e], TOLERANCES["int8"], strict=True)
    assert report.passed and report.num_decisive == 0
    assert report.decisive_top1_agreement is None and report.top1_agreement == 1.0


def test_verify_of_a_corrupt_file_raises(fp32_file, keras3_model, tmp_path):
    data = fp32_file.read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ExportError, match="corrupt"):
        verify_tflite(truncated, keras3_model)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 64)
    with pytest.raises(ExportError):
        verify_tflite(garbage, keras3_model)


def test_verify_of_a_missing_file_raises(keras3_model, tmp_path):
    path = tmp_path / "missing.tflite"
    with pytest.raises(FileNotFoundError, match="not found") as info:
        verify_tflite(path, keras3_model)
    assert isinstance(info.value, ExportPathError) and isinstance(info.value, ValueError)
    assert str(info.value) == (
        "TFLite file not found. Expected an existing .tflite file. "
        f"Received: path={str(path)!r}"
    )


# ------------------------------------------------------------- atomic writing
def test_failed_export_leaves_the_previous_file_unchanged(
    fp32_file, keras3_model, tmp_path, monkeypatch
):
    path = tmp_path / "model.tflite"
    path.write_bytes(fp32_file.read_bytes())
    before = path.read_bytes()

    def broken_convert(*args, **kwargs):
        return before[: len(before) // 2]  # a half-written flatbuffer

    monkeypatch.setattr(tflite_module, "_convert", broken_convert)
    with pytest.raises(ExportError, match="left as it was"):
        export_tflite(keras3_model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]  # no temp files left


def test_failed_conversion_leaves_no_file_behind(keras3_model, tmp_path, monkeypatch):
    def failing_convert(*args, **kwargs):
        raise ExportError("conversion failed on purpose")

    monkeypatch.setattr(tflite_module, "_convert", failing_convert)
    with pytest.raises(ExportError, match="on purpose"):
        export_tflite(keras3_model, tmp_path / "m.tflite")
    assert not list(tmp_path.iterdir())


def test_export_replaces_an_existing_file_with_the_new_model(
    fp32_file, keras3_model, images, tmp_path
):
    path = tmp_path / "model.tflite"
    path.write_bytes(fp32_file.read_bytes())
    export_tflite(keras3_model, path, quantize="int8", representative_data=images, verify=False)
    assert path.read_bytes() != fp32_file.read_bytes()
    assert verify_tflite(path, keras3_model, images).quantize == "int8"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere"
)
def test_unwritable_folder_is_a_clear_error(keras3_model, tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ExportError, match="writable"):
            export_tflite(keras3_model, folder / "m.tflite")
    finally:
        folder.chmod(0o755)


def test_folder_refusing_writes_is_a_clear_error(keras3_model, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(ExportError, match="writable folder.*Received: folder="):
        export_tflite(keras3_model, tmp_path / "m.tflite")


def test_missing_folder_is_a_clear_error(keras3_model, tmp_path):
    path = tmp_path / "no" / "such" / "m.tflite"
    with pytest.raises(ExportPathError) as info:
        export_tflite(keras3_model, path)
    err = info.value
    for cls in (ExportError, FileNotFoundError, ValueError, errors.PrecropError):
        assert isinstance(err, cls), cls
    assert str(err) == (
        "The destination folder does not exist or is not a folder. Expected an "
        f"existing, writable folder. Received: folder={str(path.parent)!r}, path={str(path)!r}"
    )
    assert not (tmp_path / "no").exists()


def test_destination_below_a_file_is_a_path_error(keras3_model, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(FileNotFoundError, match="not a folder.*Received: folder=.*a_file"):
        export_tflite(keras3_model, blocker / "m.tflite")
    assert blocker.read_text() == "not a folder"


def test_export_error_is_a_value_error_and_stays_a_runtime_error():
    # errors.py promises ValueError/TypeError; RuntimeError is kept for callers of
    # earlier releases, where ExportError was only a RuntimeError.
    assert issubclass(ExportError, ValueError) and issubclass(ExportError, RuntimeError)
    assert issubclass(ExportError, errors.PrecropError)
    assert issubclass(ExportPathError, ExportError) and issubclass(ExportPathError, FileNotFoundError)
    assert not issubclass(ExportError, OSError)


def test_destination_that_is_a_folder_is_an_export_error(keras3_model, tmp_path):
    with pytest.raises(ExportError, match="The destination is a folder") as info:
        export_tflite(keras3_model, tmp_path)
    assert not isinstance(info.value, FileNotFoundError)
    assert f"Received: path={str(tmp_path)!r}" in str(info.value)


# -------------------------------------------------------- augmentation layers
def augmented_cnn(line, seed=0):
    """The keras.io "image classification from scratch" pattern, small.

    Random augmentation, then rescaling, two convs and a classifier.
    """
    k = _keras(line)
    k.utils.set_random_seed(seed)
    inputs = k.Input((32, 32, 3), name="image")
    x = k.layers.RandomFlip("horizontal")(inputs)
    x = k.layers.RandomRotation(0.1)(x)
    x = k.layers.Rescaling(1.0 / 255)(x)
    x = k.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    x = k.layers.Dropout(0.25)(x)
    return k.Model(inputs, k.layers.Dense(10)(x), name=f"augmented_{line}")


@pytest.mark.parametrize("line", LINES)
def test_augmentation_layers_are_identities_in_the_exported_file(line, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = augmented_cnn(line)
    pixels = np.random.default_rng(1).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    small = tf_precrop.crop(model, 0.5)
    assert small.count_params() < model.count_params()
    for name, m in (("dense", model), ("cropped", small)):
        path = tmp_path / f"{name}.tflite"
        result = export_tflite(m, path, representative_data=pixels)
        assert result.num_samples == 16 and result.relative_error <= TOLERANCES[None]
        ops = {op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details()}
        assert not {o for o in ops if "RANDOM" in o or o == "CUSTOM"}, ops
        # Verification compares with the inference call (augmentation off).
        report = verify_tflite(path, m, pixels[:4])
        assert report.passed and report.max_abs_error <= 1e-4 * max(1.0, report.output_scale)


def test_augmentation_nested_in_a_submodel_and_random_crop_convert(tmp_path):
    import keras

    keras.utils.set_random_seed(2)
    augment = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomZoom(0.1),
            keras.layers.RandomTranslation(0.1, 0.1),
            keras.layers.RandomContrast(0.2),
            keras.layers.RandomBrightness(0.2),
            keras.layers.GaussianNoise(0.1),
        ],
        name="augment",
    )
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.RandomCrop(24, 24)(augment(inputs))  # center crop at inference
    x = keras.layers.Conv2D(8, 3, activation="relu")(keras.layers.Rescaling(1.0 / 255)(x))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    pixels = np.random.default_rng(3).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    result = export_tflite(model, tmp_path / "nested.tflite", representative_data=pixels)
    assert result.relative_error <= TOLERANCES[None]


def test_export_leaves_the_model_unchanged(tmp_path):
    model = augmented_cnn("keras3", seed=4)
    before = [w.copy() for w in model.get_weights()]
    layers = [layer.name for layer in model.layers]
    export_tflite(model, tmp_path / "m.tflite", verify=False)
    assert [layer.name for layer in model.layers] == layers
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


# -------------------------------------------------------------------- latency
@pytest.mark.parametrize("use_xnnpack", [True, False])
def test_benchmark_reports_ordered_positive_latencies(fp32_file, use_xnnpack):
    latency = benchmark_tflite(fp32_file, num_threads=2, runs=10, warmup=2, use_xnnpack=use_xnnpack)
    assert isinstance(latency, TFLiteLatency)
    assert 0.0 < latency.median_ms <= latency.p90_ms
    assert latency.mean_ms > 0.0 and latency.runs == 10 and latency.num_threads == 2
    assert latency.delegate == ("xnnpack" if use_xnnpack else "none")
    assert latency.to_dict()["median_ms"] == latency.median_ms


def test_benchmark_runs_an_int8_io_file(keras3_model, images, tmp_path):
    path = tmp_path / "io.tflite"
    export_tflite(
        keras3_model, path, quantize="int8", representative_data=images, int8_io=True, verify=False
    )
    latency = benchmark_tflite(path, runs=5, warmup=1)
    assert 0.0 < latency.median_ms <= latency.p90_ms


def test_benchmark_of_missing_or_corrupt_files_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        benchmark_tflite(tmp_path / "missing.tflite")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(ExportError, match="corrupt"):
        benchmark_tflite(corrupt)


def test_benchmark_rejects_nonpositive_runs(fp32_file):
    with pytest.raises(ValueError, match="Received: runs=0"):
        benchmark_tflite(fp32_file, runs=0)


def test_export_tolerance_is_forwarded_to_the_verifier(keras3_model, tmp_path):
    path = tmp_path / "half.tflite"
    measured = export_tflite(keras3_model, path, quantize="float16").relative_error
    assert 0.0 < measured < TOLERANCES["float16"]
    before = path.read_bytes()
    with pytest.raises(ExportError, match="relative error"):
        export_tflite(keras3_model, path, quantize="float16", tolerance=measured / 2)
    assert path.read_bytes() == before  # the failed export left the file as it was
    loose = export_tflite(keras3_model, path, quantize="float16", tolerance=measured * 2)
    assert loose.relative_error == pytest.approx(measured, rel=1e-6)


def test_a_loose_tolerance_keeps_the_int8_top1_gate():
    rng = np.random.default_rng(1)
    e, top = _logits(rng, 100, 10, margin=0.06)
    g = e.copy()
    g[np.arange(6), top[:6]] -= 0.09
    with pytest.raises(ExportError, match="decisive samples"):
        verify_module._compare("f", "int8", [e], [g], 10.0, strict=True)
