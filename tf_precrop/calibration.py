"""Real input samples for int8 calibration and export verification, read from a file.

:func:`load_samples` reads what ``tf-precrop crop --calibration-data PATH`` is
given, and :func:`split_samples` cuts it into disjoint calibration and held-back
verification sets.

PATH is one of:

* a ``.npy`` file: one array of shape ``(N, *input_shape)``;
* a ``.npz`` file: its only array, or, if it holds several, the one named
  ``x`` (else ``images``);
* a folder of images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.gif``,
  searched recursively, sorted by path): each image is decoded with
  ``tf.io.decode_image`` with the model's channel count (1 grey, 3 RGB,
  4 RGBA), resized to the model's input height x width (bilinear, aspect
  ratio not kept) and given as float32 pixel values in ``[0, 255]``.

The samples are fed to the model **as they are**: no scaling or
normalization is applied, so they must be in the model's own input range.
Images in ``[0, 255]`` suit models that rescale inside (tf_precrop's bundled
models with ``normalize=True``, keras.applications with a preprocessing layer);
for a model that expects ``[-1, 1]`` or ``[0, 1]`` (``keras.applications``
built with ``weights=None`` has no preprocessing layer), preprocess the images
yourself and save them as a ``.npy``.

At most ``limit`` samples are read, drawn in a seeded random order (so a folder
sorted by class, or an array sorted by label, still gives every class to both
sets); only those images are decoded and, for a ``.npy``, only those rows read
(memory-mapped).
"""

import os
import re

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

#: Array names looked up, in order, in an ``.npz`` holding several arrays.
NPZ_KEYS = ("x", "images")


class CalibrationDataError(ValueError):
    """The calibration data file or folder cannot be used for this model."""


def _shape_text(input_shape):
    return "(N, " + ", ".join("?" if d is None else str(d) for d in input_shape) + ")"


def _tf_message(e):
    """First line of a TensorFlow error, without its ``{{function_node ...}}`` and ``[Op:...]``."""
    text = (str(e).splitlines() or [""])[0]
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:.*$", "", text).strip().rstrip(".")


def _check_magic(path, lower):
    with open(path, "rb") as f:
        head = f.read(6)
    if lower.endswith(".npy") and head != b"\x93NUMPY":
        raise CalibrationDataError(
            f"could not read calibration data {path}: it is not a .npy file (it does not start "
            "with the NumPy signature); expected an array saved with numpy.save. "
            f"Received: path={path!r}"
        )
    if lower.endswith(".npz") and head[:4] != b"PK\x03\x04":
        raise CalibrationDataError(
            f"could not read calibration data {path}: it is not an .npz file (not a zip "
            f"archive); expected arrays saved with numpy.savez. Received: path={path!r}"
        )


def _read_array(path):
    lower = path.lower()
    try:
        _check_magic(path, lower)
        if lower.endswith(".npy"):
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if lower.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                if not keys:
                    raise CalibrationDataError(
                        f"calibration data {path} holds no arrays; expected an .npz with one "
                        f"array or one named {' or '.join(NPZ_KEYS)}. Received: keys=[]"
                    )
                if len(keys) == 1:
                    return archive[keys[0]]
                for key in NPZ_KEYS:
                    if key in keys:
                        return archive[key]
                raise CalibrationDataError(
                    f"calibration data {path} holds several arrays and none is named "
                    f"{' or '.join(repr(k) for k in NPZ_KEYS)}; expected one array or one of "
                    f"those names. Received: keys={keys}"
                )
    except CalibrationDataError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy raises many types for a bad file
        first = (str(e).splitlines() or [""])[0]
        raise CalibrationDataError(
            f"could not read calibration data {path}: {type(e).__name__}: {first}; expected a "
            "numeric .npy/.npz array saved with numpy.save/numpy.savez (no pickled objects). "
            f"Received: path={path!r}"
        ) from e
    raise CalibrationDataError(
        f"calibration data {path} is neither a .npy/.npz file nor a folder of images; "
        f"expected one of those. Received: path={path!r}"
    )


def _check_array(array, path, input_shape):
    expected = _shape_text(input_shape)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise CalibrationDataError(
            f"calibration data {path} is not numeric; expected a float or integer array of "
            f"shape {expected}. Received: dtype={array.dtype}"
        )
    ok = array.ndim == len(input_shape) + 1 and all(
        d is None or d == a for d, a in zip(input_shape, array.shape[1:], strict=False)
    )
    if not ok:
        raise CalibrationDataError(
            f"calibration data {path} has the wrong shape for the model input; expected "
            f"{expected}. Received: shape={tuple(array.shape)}"
        )
    if array.shape[0] < 2:
        raise CalibrationDataError(
            f"calibration data {path} has too few samples; expected at least 2 (calibration "
            f"and held-back verification samples). Received: samples={array.shape[0]}"
        )


def _image_files(folder):
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(
            os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS)
        )
    return files


def _read_images(folder, input_shape, limit, rng):
    if len(input_shape) != 3 or input_shape[0] is None or input_shape[1] is None:
        raise CalibrationDataError(
            f"calibration data {folder} is a folder of images, but the model input is not an "
            f"image of known height x width; expected input shape (H, W, C) with known H and "
            f"W (pass a .npy instead). Received: input_shape={tuple(input_shape)}"
        )
    height, width, channels = input_shape
    if channels not in (1, 3, 4):
        raise CalibrationDataError(
            f"calibration data {folder} is a folder of images, but the model input has "
            f"{channels} channels; expected 1, 3 or 4 (pass a .npy instead). Received: "
            f"input_shape={tuple(input_shape)}"
        )
    files = _image_files(folder)
    if len(files) < 2:
        raise CalibrationDataError(
            f"calibration data folder {folder} has {'no' if not files else 'only one'} image "
            f"file; expected at least 2 files ending in {', '.join(IMAGE_EXTENSIONS)} (searched "
            f"recursively). Received: images={len(files)}"
        )
    import tensorflow as tf

    chosen = [files[i] for i in rng.permutation(len(files))[:limit]]
    images = np.empty((len(chosen), height, width, channels), np.float32)
    for i, name in enumerate(chosen):
        try:
            image = tf.io.decode_image(
                tf.io.read_file(name), channels=channels, expand_animations=False
            )
        except Exception as e:  # noqa: BLE001 - tf raises InvalidArgumentError and others
            first = _tf_message(e)
            raise CalibrationDataError(
                f"could not read image {name} in calibration data folder {folder}: "
                f"{type(e).__name__}: {first}; expected a readable "
                f"{'/'.join(x[1:] for x in IMAGE_EXTENSIONS)} file. Received: path={name!r}"
            ) from e
        images[i] = tf.image.resize(tf.cast(image, tf.float32), (height, width)).numpy()
    return images


def load_samples(path, input_shape, limit, seed=0):
    """Up to ``limit`` samples from ``path`` for a model input of ``input_shape``.

    Args:
        path: A ``.npy``/``.npz`` file or a folder of images (module docstring).
        input_shape: The model's input shape without the batch dimension,
            ``None`` where unknown, e.g. ``(224, 224, 3)``.
        limit: Most samples to return (at least 2).
        seed: Seed of the random order the samples are drawn in.

    Returns:
        A float32 array of shape ``(n, *input_shape)``, ``2 <= n <= limit``, in
        the seeded random order, values as stored (not rescaled).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CalibrationDataError: unreadable file, empty folder, wrong shape or
            dtype, fewer than 2 samples, or non-finite values.
    """
    path = os.fspath(path)
    input_shape = tuple(None if d is None else int(d) for d in input_shape)
    rng = np.random.default_rng(seed)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"calibration data not found: {path}; expected a .npy/.npz file or a folder of "
            f"images of shape {_shape_text(input_shape)}. Received: path={path!r}"
        )
    if os.path.isdir(path):
        samples = _read_images(path, input_shape, limit, rng)
    else:
        array = _read_array(path)
        _check_array(array, path, input_shape)
        order = rng.permutation(array.shape[0])[:limit]
        samples = np.asarray(array[order], dtype=np.float32)
    if not np.all(np.isfinite(samples)):
        raise CalibrationDataError(
            f"calibration data {path} has NaN or infinite values; expected finite inputs. "
            f"Received: non-finite values={int(np.sum(~np.isfinite(samples)))}"
        )
    return samples


def split_samples(samples, num_verify):
    """Disjoint ``(calibration, verification)`` sets from ``samples``.

    The last ``min(num_verify, max(1, n // 4))`` samples are held back for
    verification (at most a quarter, at least one), the rest calibrate.
    """
    n = samples.shape[0]
    if n < 2:
        raise CalibrationDataError(
            f"too few samples to split; expected at least 2. Received: samples={n}"
        )
    held = min(int(num_verify), max(1, n // 4))
    return samples[: n - held], samples[n - held :]
