"""Tests of tf_precrop.data: CIFAR-10 loading, caching, splitting, pipelines.

The local-copy reader and its cache are tested on the full local copy at
``../shared/data/cifar10/train-jpg.zip`` when it is there, else (a fresh
offline clone) on a small zip laid out the same way, made by re-encoding the
500-image sample bundled with the package. Only the tests that need the full
copy itself skip without it, each saying why.
"""

import hashlib
import warnings
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf_precrop import data
from tf_precrop.data import (
    CIFAR10_CLASSES,
    cifar10_dataset,
    cifar10_stream,
    load_cifar10,
    train_val_split,
)

ZIP = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10" / "train-jpg.zip"
).resolve()
LIMIT = 2000 if ZIP.is_file() else 200


def needs_zip(why):
    return pytest.mark.skipif(
        not ZIP.is_file(), reason=f"{why}; needs the full local copy, not found at {ZIP}"
    )


def _no_keras(limit):
    raise OSError("no internet (test)")


def _fail_decoding(*args, **kwargs):
    raise AssertionError("decoded JPEGs although the cache holds the images")


@pytest.fixture
def offline(monkeypatch):
    """As on a fresh clone without internet: no local copy, keras cannot download."""
    monkeypatch.setattr(data, "_find_local_copy", lambda: None)
    monkeypatch.setattr(data, "_load_from_keras", _no_keras)


@pytest.fixture
def no_decoding(monkeypatch):
    """Makes any JPEG decoding fail, so a load that succeeds came from the cache."""
    monkeypatch.setattr(data._local, "decode", _fail_decoding)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cifar_cache")


@pytest.fixture(scope="module")
def sample_zip(tmp_path_factory):
    """A 500-image local copy made of the bundled sample, re-encoded as JPEGs."""
    (x, y), _ = load_cifar10("sample", verbose=0)
    path = tmp_path_factory.mktemp("small_copy") / "train-jpg.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            jpeg = tf.io.encode_jpeg(image, quality=95).numpy()
            z.writestr(f"train/{CIFAR10_CLASSES[label]}/{i // 10:04d}.jpg", jpeg)
    return path


@pytest.fixture(scope="module")
def source_zip(request):
    """The full local copy if it is there, else the copy made of the sample."""
    return ZIP if ZIP.is_file() else request.getfixturevalue("sample_zip")


@pytest.fixture(scope="module")
def first_load(source_zip, cache_dir):
    """The limited load that fills the cache."""
    (x, y), test = load_cifar10(source_zip, cache_dir=cache_dir, limit=LIMIT, verbose=0)
    return x, y, test


@pytest.fixture(scope="module")
def small(first_load):
    x, y, _ = first_load
    return x, y


# ----------------------------------------------------------------------- load
def test_limited_load_returns_uint8_images_and_int64_labels_without_test_split(first_load):
    x, y, test = first_load
    assert x.shape == (LIMIT, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (LIMIT,) and y.dtype == np.int64
    assert test is None
    assert x.std() > 10  # real pictures, not blank


def test_limited_load_is_a_class_balanced_subset(small):
    _, y = small
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [LIMIT // 10] * 10)


def test_labels_and_pixels_match_the_folders_inside_the_zip(small, source_zip):
    x, y = small
    last = LIMIT // 10 - 1
    # Interleaved order: index = number * 10 + class index.
    with zipfile.ZipFile(source_zip) as z:
        for name in (
            "train/airplane/0000.jpg",
            "train/cat/0017.jpg",
            f"train/ship/{last // 3:04d}.jpg",
            f"train/truck/{last:04d}.jpg",
            f"train/frog/{last // 2:04d}.jpg",
        ):
            class_name, number = name.split("/")[1], int(name.split("/")[2][:4])
            label = CIFAR10_CLASSES.index(class_name)
            index = number * 10 + label
            assert y[index] == label
            expected = tf.io.decode_jpeg(z.read(name), channels=3).numpy()
            np.testing.assert_array_equal(x[index], expected)


def test_second_load_reads_the_cache_without_decoding(
    first_load, source_zip, cache_dir, no_decoding
):
    x, y, _ = first_load
    cached = sorted(Path(cache_dir).glob(f"*limit{LIMIT}.npz"))
    assert len(cached) == 1
    (x2, y2), _ = load_cifar10(source_zip, cache_dir=cache_dir, limit=LIMIT, verbose=0)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    with np.load(cached[0]) as f:
        np.testing.assert_array_equal(f["x"], x)


def test_auto_source_uses_the_environment_variable(monkeypatch, small, source_zip, cache_dir):
    monkeypatch.setenv(data.ENV_VAR, str(source_zip))
    (x, y), test = load_cifar10("auto", cache_dir=cache_dir, limit=LIMIT, verbose=0)
    np.testing.assert_array_equal(x, small[0])
    assert test is None


def test_a_folder_of_jpegs_loads_like_the_zip(tmp_path, small, source_zip):
    with zipfile.ZipFile(source_zip) as z:
        for class_name in CIFAR10_CLASSES:
            for number in range(3):
                name = f"train/{class_name}/{number:04d}.jpg"
                target = tmp_path / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
    (x, y), _ = load_cifar10(tmp_path, cache_dir=False, verbose=0)
    np.testing.assert_array_equal(x, small[0][:30])
    np.testing.assert_array_equal(y, small[1][:30])


def test_auto_source_rejects_an_environment_variable_naming_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "missing.zip"))
    with pytest.raises(ValueError, match="TF_PRECROP_CIFAR10"):
        load_cifar10("auto", verbose=0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"source": 3}, TypeError),
        ({"source": "/no/such/cifar.zip"}, ValueError),
        ({"limit": 0}, ValueError),
        ({"limit": 2.5}, ValueError),
        ({"source": "sample", "limit": data.SAMPLE_SIZE + 1}, ValueError),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error):
    with pytest.raises(error, match="Received"):
        load_cifar10(**{"verbose": 0, **kwargs})


@needs_zip("loads all 50,000 images")
@pytest.mark.slow
def test_full_load_gives_50000_balanced_images_and_caches_them(tmp_path, small, monkeypatch):
    (x, y), test = load_cifar10(ZIP, cache_dir=tmp_path, verbose=0)
    assert x.shape == (50000, 32, 32, 3) and x.dtype == np.uint8
    assert test is None
    np.testing.assert_array_equal(np.bincount(y), [5000] * 10)
    # Every prefix is class-balanced, so a limited load is a prefix.
    np.testing.assert_array_equal(x[:LIMIT], small[0])

    # From now on decoding fails: the loads below must come from the full cache.
    monkeypatch.setattr(data._local, "decode", _fail_decoding)
    (x2, y2), _ = load_cifar10(ZIP, cache_dir=tmp_path, verbose=0)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    # A limited load is cut from the full cache.
    (x3, _), _ = load_cifar10(ZIP, cache_dir=tmp_path, limit=100, verbose=0)
    np.testing.assert_array_equal(x3, x[:100])


def test_a_limited_load_is_cut_from_the_full_cache(sample_zip, tmp_path, monkeypatch):
    (x, y), _ = load_cifar10(sample_zip, cache_dir=tmp_path, verbose=0)
    assert len(x) == 500 and len(list(tmp_path.glob("*.npz"))) == 1
    monkeypatch.setattr(data._local, "decode", _fail_decoding)
    (x2, y2), _ = load_cifar10(sample_zip, cache_dir=tmp_path, limit=30, verbose=0)
    np.testing.assert_array_equal(x2, x[:30])
    np.testing.assert_array_equal(y2, y[:30])
    (x3, _), _ = load_cifar10(sample_zip, cache_dir=tmp_path, verbose=0)
    np.testing.assert_array_equal(x3, x)


# --------------------------------------------------------------------- sample
def test_sample_gives_500_real_balanced_uint8_images_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (x, y), test = load_cifar10("sample", verbose=0)
    assert data.SAMPLE_SIZE == 500
    assert x.shape == (500, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (500,) and y.dtype == np.int64
    assert test is None
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [50] * 10)
    np.testing.assert_array_equal(y, np.arange(500) % 10)  # class-interleaved
    assert x.std() > 10  # real pictures, not blank
    assert len({x[i].tobytes() for i in range(500)}) == 500  # no duplicates


def test_sample_limit_is_a_class_balanced_prefix():
    (x, y), _ = load_cifar10("sample", verbose=0)
    (x2, y2), _ = load_cifar10("sample", limit=105, verbose=0)
    np.testing.assert_array_equal(x2, x[:105])
    np.testing.assert_array_equal(np.bincount(y2), [11] * 5 + [10] * 5)


def test_sample_rejects_a_limit_above_its_size():
    with pytest.raises(ValueError, match=r"only 500 images.*Received: limit=501"):
        load_cifar10("sample", limit=501, verbose=0)


def test_sample_is_package_data_with_its_provenance():
    resource = data._sample.sample_resource()
    assert resource.is_file()
    readme = resources.files("tf_precrop.datasets").joinpath("README.md")
    text = readme.read_text(encoding="utf-8")
    digest = hashlib.sha256(resource.read_bytes()).hexdigest()
    assert f"sha256 of `cifar10_sample.npz`: `{digest}`" in text
    with resource.open("rb") as f, np.load(f) as stored:
        assert str(stored["names"][0]) == "train/airplane/0000.jpg"
        assert str(stored["names"][-1]) == "train/truck/0049.jpg"


@needs_zip("compares the sample with the first 500 images of the full copy")
def test_sample_equals_the_first_images_of_the_local_copy(small):
    (x, y), _ = load_cifar10("sample", verbose=0)
    np.testing.assert_array_equal(x, small[0][:500])
    np.testing.assert_array_equal(y, small[1][:500])


@needs_zip("regenerates the sample from the full copy")
def test_sample_file_is_what_the_script_regenerates_from_the_zip(capsys):
    from tf_precrop.datasets import make_cifar10_sample

    assert make_cifar10_sample.main(["--zip", str(ZIP), "--check"]) == 0, capsys.readouterr().out


def test_unreadable_sample_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(data._sample, "sample_resource", lambda: tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="reinstall tf_precrop.*Received: path="):
        load_cifar10("sample", verbose=0)


# -------------------------------------------------------------- auto fallback
@pytest.mark.parametrize(("limit", "expected"), [(None, 500), (200, 200), (2000, 500)])
def test_auto_falls_back_to_the_sample_with_a_warning(offline, limit, expected):
    with pytest.warns(UserWarning, match=f"only {expected} images") as record:
        (x, y), test = load_cifar10("auto", limit=limit, verbose=0)
    message = str(record[0].message)
    assert "TF_PRECROP_CIFAR10" in message and "no internet (test)" in message
    assert ("instead of limit=2000" in message) == (limit == 2000)
    assert record[0].filename == __file__  # attributed to the caller
    assert test is None and len(x) == expected
    np.testing.assert_array_equal(x, load_cifar10("sample", limit=expected, verbose=0)[0][0])


def test_auto_prefers_keras_when_it_works(monkeypatch):
    fake = ((np.zeros((10, 32, 32, 3), np.uint8), np.arange(10)), None)
    monkeypatch.setattr(data, "_find_local_copy", lambda: None)
    monkeypatch.setattr(data, "_load_from_keras", lambda limit: fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_cifar10("auto", verbose=0) is fake


def test_environment_variable_none_hides_the_local_copies(monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, "none")
    monkeypatch.setattr(data, "_load_from_keras", _no_keras)
    assert data._find_local_copy() is None
    with pytest.warns(UserWarning, match="only 100 images"):
        (x, _), _ = load_cifar10("auto", limit=100, verbose=0)
    assert len(x) == 100


def test_environment_variable_sample_uses_the_sample_without_download_or_warning(monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, "sample")
    monkeypatch.setattr(data, "_load_from_keras", _no_keras)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (x, y), test = load_cifar10("auto", limit=2000, verbose=0)
    assert len(x) == 500 and test is None


def test_auto_without_any_source_raises_a_clear_error(offline, monkeypatch, tmp_path):
    monkeypatch.setattr(data._sample, "sample_resource", lambda: tmp_path / "missing.npz")
    with pytest.raises(
        ValueError, match=r"no local copy was found.*no internet.*Received: source='auto'"
    ):
        load_cifar10("auto", verbose=0)


# ---------------------------------------------------------------------- split
def _labels(per_class=100):
    return np.tile(np.arange(10), per_class)


def test_split_is_disjoint_covering_and_exactly_balanced():
    y = _labels()
    x = np.arange(len(y))  # the images are their own indices
    (xt, yt), (xv, yv) = train_val_split(x, y, val_size=200, seed=0)
    assert len(xv) == 200 and len(xt) == 800
    assert not set(xt) & set(xv)
    np.testing.assert_array_equal(np.sort(np.concatenate([xt, xv])), x)
    np.testing.assert_array_equal(np.bincount(yv), [20] * 10)
    np.testing.assert_array_equal(np.bincount(yt), [80] * 10)
    np.testing.assert_array_equal(y[xv], yv)


def test_split_is_fixed_by_the_seed():
    y = _labels()
    x = np.arange(len(y))
    a = train_val_split(x, y, val_size=100, seed=3)[1][0]
    b = train_val_split(x, y, val_size=100, seed=3)[1][0]
    c = train_val_split(x, y, val_size=100, seed=4)[1][0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("val_size", [15, 0, 1000])
def test_split_rejects_sizes_that_cannot_be_balanced(val_size):
    y = _labels()
    with pytest.raises(ValueError, match="Received"):
        train_val_split(np.arange(len(y)), y, val_size=val_size)


# ------------------------------------------------------------------- pipeline
def _originals(ds_images, x, pad, mode):
    """For each output image, whether it is a crop (maybe mirrored) of some x."""
    padded = np.pad(x.astype(np.float32), [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode=mode)
    found = []
    for image in ds_images:
        ok = False
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crops = padded[:, dy : dy + 32, dx : dx + 32]
                if (crops == image).all(axis=(1, 2, 3)).any() or (crops[:, :, ::-1] == image).all(
                    axis=(1, 2, 3)
                ).any():
                    ok = True
                    break
            if ok:
                break
        found.append(ok)
    return np.array(found)


@pytest.mark.parametrize(("pad_mode", "np_mode"), [("zero", "constant"), ("reflect", "reflect")])
def test_augmentation_keeps_shape_and_dtype_and_crops_or_flips_images(pad_mode, np_mode):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    y = np.arange(64) % 10
    plain = cifar10_dataset(x, y, batch_size=32, augment=False, seed=1)
    augmented = cifar10_dataset(x, y, batch_size=32, augment=True, seed=1, pad_mode=pad_mode)
    (a, la), (b, lb) = next(iter(plain)), next(iter(augmented))
    assert b.shape == (32, 32, 32, 3) and b.dtype == tf.float32 and lb.dtype == tf.int64
    np.testing.assert_array_equal(la, lb)  # same shuffle, so the same images
    changed = np.any(a.numpy() != b.numpy(), axis=(1, 2, 3))
    assert changed.sum() >= 16
    # Every output is a 32x32 crop of the padded original, possibly mirrored.
    assert _originals(b.numpy(), x, 4, np_mode).all()


def test_training_pipeline_is_reproducible_with_a_seed_and_reshuffles_each_epoch():
    x = np.random.default_rng(0).integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
    y = np.arange(100) % 10
    ds1 = cifar10_dataset(x, y, batch_size=50, seed=7)
    ds2 = cifar10_dataset(x, y, batch_size=50, seed=7)
    epoch1 = [b.numpy() for b, _ in ds1]
    np.testing.assert_array_equal(epoch1[0], next(iter(ds2))[0].numpy())
    epoch2 = [b.numpy() for b, _ in ds1]
    assert not np.array_equal(epoch1[0], epoch2[0])


def test_evaluation_pipeline_keeps_order_values_and_the_last_partial_batch():
    x = np.random.default_rng(0).integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    y = np.arange(70) % 10
    batches = list(cifar10_dataset(x, y, batch_size=32, training=False))
    assert [len(b) for b, _ in batches] == [32, 32, 6]
    np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), x.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([lab for _, lab in batches]), y)


def test_training_pipeline_drops_the_last_partial_batch():
    x = np.zeros((70, 32, 32, 3), np.uint8)
    sizes = [len(b) for b, _ in cifar10_dataset(x, np.zeros(70, int), batch_size=32)]
    assert sizes == [32, 32]


def test_normalize_gives_about_zero_mean_and_unit_std():
    (x, y), _ = load_cifar10("sample", verbose=0)
    images = np.concatenate(
        [
            b.numpy()
            for b, _ in cifar10_dataset(x, y, batch_size=500, training=False, normalize=True)
        ]
    )
    mean = images.mean(axis=(0, 1, 2))
    std = images.std(axis=(0, 1, 2))
    np.testing.assert_allclose(mean, 0.0, atol=0.1)
    np.testing.assert_allclose(std, 1.0, atol=0.1)
    raw = next(iter(cifar10_dataset(x, y, batch_size=500, training=False)))[0].numpy()
    assert raw.min() >= 0 and raw.max() <= 255 and raw.max() > 1


def test_pipeline_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="Received"):
        cifar10_dataset(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3, int))
    with pytest.raises(ValueError, match="pad_mode"):
        cifar10_dataset(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, int), pad_mode="edge")


# --------------------------------------------------------------- the stream
def _labelled(n):
    """Images whose label is their index, so every batch tells which images it holds."""
    x = np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return x, np.arange(n)


def test_stream_visits_every_image_once_per_pass_in_a_new_order_each_pass():
    x, y = _labelled(100)  # batch 32: 3 batches (96 images) per pass, 4 dropped
    batches = list(cifar10_stream(x, y, batch_size=32, steps=9, augment=False, seed=0))
    assert [len(lab) for _, lab in batches] == [32] * 9
    passes = [np.concatenate([lab.numpy() for _, lab in batches[i : i + 3]]) for i in (0, 3, 6)]
    for seen in passes:
        assert len(set(seen.tolist())) == 96
    assert not np.array_equal(passes[0], passes[1]) and not np.array_equal(passes[1], passes[2])
    for images, labels in batches:  # without augmentation a batch is the indexed images
        np.testing.assert_array_equal(images.numpy(), x[labels.numpy()].astype(np.float32))


@pytest.mark.parametrize("start", [0, 3, 4, 8])
def test_stream_started_at_a_step_yields_the_rest_of_the_whole_stream(start):
    x, y = _labelled(100)
    whole = list(cifar10_stream(x, y, batch_size=32, steps=9, seed=4))
    tail = list(cifar10_stream(x, y, batch_size=32, steps=9, start=start, seed=4))
    assert len(tail) == 9 - start
    for (a, la), (b, lb) in zip(whole[start:], tail, strict=True):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(a, b)  # the same crops and flips too


def test_stream_augments_with_crops_and_flips_and_depends_on_the_seed():
    x, y = _labelled(64)
    images, labels = next(iter(cifar10_stream(x, y, batch_size=32, steps=1, seed=2)))
    plain = x[labels.numpy()].astype(np.float32)
    assert np.any(images.numpy() != plain, axis=(1, 2, 3)).sum() >= 16
    assert _originals(images.numpy(), x, 4, "constant").all()
    again = next(iter(cifar10_stream(x, y, batch_size=32, steps=1, seed=2)))[1]
    other = next(iter(cifar10_stream(x, y, batch_size=32, steps=1, seed=3)))[1]
    np.testing.assert_array_equal(labels, again)
    assert not np.array_equal(labels, other)


def test_stream_with_fewer_images_than_a_batch_yields_them_all_every_step():
    x, y = _labelled(20)
    batches = list(cifar10_stream(x, y, batch_size=32, steps=3, seed=0))
    assert [sorted(lab.numpy().tolist()) for _, lab in batches] == [list(range(20))] * 3
    assert len(list(cifar10_stream(x, y, batch_size=8, seed=0))) == 2  # steps=None: one pass


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"seed": None}, "seed"), ({"steps": 0}, "steps"), ({"steps": 3, "start": 4}, "start")],
)
def test_stream_rejects_bad_arguments(kwargs, match):
    x, y = _labelled(40)
    with pytest.raises(ValueError, match=match):
        cifar10_stream(x, y, batch_size=8, **{"seed": 0, **kwargs})
