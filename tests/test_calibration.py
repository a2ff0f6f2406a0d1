"""``tf_precrop.calibration``: reading ``--calibration-data`` and splitting it, in process."""

import argparse

import numpy as np
import pytest

from tf_precrop.calibration import CalibrationDataError, load_samples, split_samples

SHAPE = (6, 5, 3)


def _indexed(n, shape=SHAPE):
    """Sample i is filled with the value i, so samples can be told apart."""
    return np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, *shape)).copy()


def _ids(samples):
    return {int(v) for v in samples[:, 0, 0, 0]}


def test_npy_is_read_memory_mapped_in_a_seeded_order_up_to_the_limit(tmp_path):
    np.save(tmp_path / "x.npy", _indexed(50))
    a = load_samples(tmp_path / "x.npy", SHAPE, limit=20, seed=3)
    b = load_samples(tmp_path / "x.npy", SHAPE, limit=20, seed=3)
    assert a.shape == (20, *SHAPE) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert len(_ids(a)) == 20 and _ids(a) != set(range(20))  # shuffled, no repeats
    assert load_samples(tmp_path / "x.npy", SHAPE, limit=500).shape[0] == 50


def test_values_are_fed_as_they_are_not_rescaled(tmp_path):
    x = np.full((4, *SHAPE), 200, np.uint8)
    np.save(tmp_path / "x.npy", x)
    assert np.all(load_samples(tmp_path / "x.npy", SHAPE, limit=4) == 200.0)


def test_npz_single_array_or_key_x_or_images(tmp_path):
    np.savez(tmp_path / "one.npz", whatever=_indexed(4))
    np.savez(tmp_path / "xy.npz", x=_indexed(5), y=np.arange(5))
    np.savez(tmp_path / "images.npz", images=_indexed(6), labels=np.arange(6))
    assert load_samples(tmp_path / "one.npz", SHAPE, 99).shape[0] == 4
    assert load_samples(tmp_path / "xy.npz", SHAPE, 99).shape[0] == 5
    assert load_samples(tmp_path / "images.npz", SHAPE, 99).shape[0] == 6
    np.savez(tmp_path / "ab.npz", a=_indexed(4), b=_indexed(4))
    with pytest.raises(CalibrationDataError, match=r"ab.npz.*'x' or 'images'.*keys=\['a', 'b'\]"):
        load_samples(tmp_path / "ab.npz", SHAPE, 99)


def test_unknown_dims_match_anything(tmp_path):
    np.save(tmp_path / "x.npy", _indexed(3, (7, 9, 3)))
    assert load_samples(tmp_path / "x.npy", (None, None, 3), 9).shape == (3, 7, 9, 3)


@pytest.mark.parametrize(
    "array, needle",
    [
        (np.zeros((10, 8, 8, 3), np.float32), r"expected \(N, 6, 5, 3\). Received: shape=\(10, 8, 8, 3\)"),
        (np.zeros((6, 5, 3), np.float32), r"expected \(N, 6, 5, 3\). Received: shape=\(6, 5, 3\)"),
        (np.zeros((1, *SHAPE), np.float32), r"at least 2 .*samples=1"),
        (np.array([["a"] * 3] * 2), r"not numeric.*dtype=<U1"),
        (np.full((3, *SHAPE), np.nan, np.float32), r"NaN or infinite"),
    ],
    ids=["wrong-hw", "no-batch-dim", "one-sample", "strings", "nan"],
)
def test_bad_arrays_name_the_path_and_the_expected_shape(array, needle, tmp_path):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(CalibrationDataError, match=needle) as info:
        load_samples(tmp_path / "bad.npy", SHAPE, 99)
    assert "bad.npy" in str(info.value)


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("junk.npy", b"not numpy at all", "not a .npy file"),
        ("junk.npz", b"not a zip", "not an .npz file"),
        ("data.csv", b"1,2,3", "neither a .npy/.npz file nor a folder of images"),
    ],
)
def test_unreadable_files(name, content, needle, tmp_path):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CalibrationDataError, match=needle) as info:
        load_samples(tmp_path / name, SHAPE, 99)
    assert name in str(info.value) and "Received: " in str(info.value)


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(CalibrationDataError, match=r"could not read calibration data .*obj.npy"):
        load_samples(tmp_path / "obj.npy", SHAPE, 99)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"calibration data not found.*\(N, 6, 5, 3\)"):
        load_samples(tmp_path / "nope.npy", SHAPE, 99)


def _write_images(folder, count, size=(9, 11)):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"class{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        encode = tf.io.encode_png if i % 2 else tf.io.encode_jpeg
        tf.io.write_file(str(sub / f"im{i}.{'png' if i % 2 else 'jpg'}"), encode(pixels))


def test_image_folder_is_read_recursively_resized_in_0_255(tmp_path):
    _write_images(tmp_path / "imgs", 7)
    (tmp_path / "imgs" / "notes.txt").write_text("ignored: not an image")
    x = load_samples(tmp_path / "imgs", SHAPE, limit=99)
    assert x.shape == (7, *SHAPE) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 1
    grey = load_samples(tmp_path / "imgs", (4, 4, 1), limit=3)
    assert grey.shape == (3, 4, 4, 1)


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(CalibrationDataError, match=r"empty has no image file.*images=0"):
        load_samples(tmp_path / "empty", SHAPE, 99)
    _write_images(tmp_path / "imgs", 2)
    with pytest.raises(CalibrationDataError, match=r"not an image of known height x width"):
        load_samples(tmp_path / "imgs", (None, None, 3), 99)
    with pytest.raises(CalibrationDataError, match=r"has 2 channels; expected 1, 3 or 4"):
        load_samples(tmp_path / "imgs", (6, 5, 2), 99)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationDataError, match=r"could not read image .*broken.png.*Received: path="):
        load_samples(tmp_path / "imgs", SHAPE, 99)


@pytest.mark.parametrize("n, num_verify, held", [(2, 64, 1), (100, 64, 25), (320, 64, 64), (9, 1, 1)])
def test_split_is_disjoint_and_holds_back_at_most_a_quarter(n, num_verify, held):
    x = _indexed(n)
    calibration, verification = split_samples(x, num_verify)
    assert len(verification) == held and len(calibration) == n - held
    assert not _ids(calibration) & _ids(verification)


def test_cli_int8_calibration_and_verification_sets_are_disjoint(tmp_path):
    import keras

    from tf_precrop.cli.commands import _calibration_data

    np.save(tmp_path / "x.npy", _indexed(400))
    inp = keras.Input(SHAPE)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    args = argparse.Namespace(
        calibration_data=str(tmp_path / "x.npy"), quantize="int8", calibration_samples=256,
        verify_samples=64, seed=0,
    )
    calibration, verification = _calibration_data(args, model)
    assert (len(calibration), len(verification)) == (256, 64)
    assert not _ids(calibration) & _ids(verification)
    args.quantize = None  # other modes: everything read verifies, nothing calibrates
    calibration, verification = _calibration_data(args, model)
    assert calibration is None and len(verification) == 64
