"""CIFAR-10 loading, splitting and `tf.data` input pipelines.

Four pieces, used by :mod:`tf_precrop.training` and the benchmarks:

- :func:`load_cifar10` reads CIFAR-10 as ``uint8`` arrays, either from a local
  JPEG copy (``train/<class>/<NNNN>.jpg`` in a zip or a folder; decoded once,
  then cached as an ``.npz``), through ``keras.datasets.cifar10.load_data()``
  (needs internet, e.g. Colab), or from the 500-image sample bundled with the
  package (``source="sample"``, and the last resort of ``source="auto"``).
- :func:`train_val_split` holds out a fixed, seeded, class-balanced
  validation split (the local copy has no test split).
- :func:`cifar10_dataset` builds the batched ``tf.data.Dataset`` with the
  standard augmentation (pad 4, random 32x32 crop, random horizontal flip).
- :func:`cifar10_stream` yields the same kind of training batches as a
  stream in which every batch depends only on its step (and the seed), so a
  run resumes on exactly the batches it would have seen; ``train`` uses it.

Images stay in ``[0, 255]`` as ``float32`` unless ``normalize=True``: the
bundled models normalize inside the model.
"""

import os
import warnings
from pathlib import Path

import numpy as np

from tf_precrop.data._constants import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, NUM_CLASSES
from tf_precrop.data._local import DEFAULT_CACHE_DIR, load_local
from tf_precrop.data._sample import SAMPLE_SIZE, load_sample
from tf_precrop.data.pipeline import cifar10_dataset, cifar10_stream, train_val_split

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DEFAULT_CACHE_DIR",
    "ENV_VAR",
    "SAMPLE_SIZE",
    "cifar10_dataset",
    "cifar10_stream",
    "load_cifar10",
    "train_val_split",
]

ENV_VAR = "TF_PRECROP_CIFAR10"
"""Environment variable steering ``source="auto"``: a path to a local copy (zip
or folder), ``"none"`` (ignore local copies: ``keras.datasets``, then the
bundled sample) or ``"sample"`` (the bundled sample, no download, no warning;
a ``limit`` above its 500 images gives all 500)."""

_SHARED_ZIP = Path("..", "shared", "data", "cifar10", "train-jpg.zip")
_REPO_ROOT = Path(__file__).resolve().parent.parent.parent
_SOURCES = "'auto', 'keras', 'sample' or a path to train-jpg.zip or a folder of JPEGs"


# --------------------------------------------------------------------- loading
def load_cifar10(source="auto", cache_dir=None, limit=None, verbose=1):
    """Loads CIFAR-10 as ``uint8`` images and ``int64`` labels.

    With a local JPEG copy or the bundled sample the images come back in a
    class-interleaved order (image 0 of every class, then image 1 of every
    class, ...), so every prefix of the arrays is class-balanced. Neither has
    a test split.

    Args:
        source: Where to read from.

            - ``"auto"`` (default): a local copy if one is found, tried in this
              order: the path in the ``TF_PRECROP_CIFAR10`` environment
              variable, ``../shared/data/cifar10/train-jpg.zip`` relative to
              the current directory, then relative to the repository root
              of this package. Otherwise ``keras.datasets.cifar10.load_data()``;
              if that fails too (no internet), the bundled sample, with a
              ``UserWarning`` saying so. ``TF_PRECROP_CIFAR10=none`` skips the
              local copies, ``TF_PRECROP_CIFAR10=sample`` goes straight to the
              sample (no download, no warning).
            - ``"keras"``: ``keras.datasets.cifar10.load_data()`` (downloads
              on first use, so it needs internet).
            - ``"sample"``: the 500 real training images (50 per class)
              bundled with the package: enough for smoke tests and demos,
              far too few to measure accuracy. Equal to the first 500 images
              of the local copy.
            - a path (``str`` or ``os.PathLike``) to ``train-jpg.zip``, to a
              folder holding ``train/<class>/*.jpg``, ``<class>/*.jpg`` or
              ``train-jpg.zip``.
        cache_dir: Folder for the decoded-array cache of local copies
            (an uncompressed ``.npz``: JPEG-noisy pixels compress by only ~7%,
            and zlib would make the cached load ~5x slower), keyed by the zip's
            size and modification time (a folder: its file names, sizes and
            times). Defaults to ``~/.cache/tf_precrop``. ``False`` turns caching
            off. Unused by ``"keras"`` and ``"sample"``.
        limit: ``None`` for all images, or a positive int: at most ``limit``
            images per split, class-balanced (``limit // 10`` per class; the
            remainder goes to the first classes). With a local copy and no
            full cache yet, only those images are decoded (fast mode). With
            ``source="sample"`` a ``limit`` above 500 is an error; when
            ``"auto"`` falls back to the sample, it returns all 500 (the
            warning says so).
        verbose: ``1`` shows a progress bar while decoding, ``0`` is quiet.

    Returns:
        ``((x_train, y_train), test)`` where ``x_train`` is ``uint8`` of shape
        ``(N, 32, 32, 3)``, ``y_train`` is ``int64`` of shape ``(N,)`` and
        ``test`` is ``(x_test, y_test)`` of the same kinds, or ``None`` when
        the source has no test split (a local copy, the sample).

    Raises:
        ValueError: a bad ``limit``, a missing or malformed source, or
            ``source="sample"`` with ``limit`` above the sample size.
        TypeError: ``source`` is neither a string nor a path.

    Example:

    >>> (x, y), test = load_cifar10("sample", limit=200, verbose=0)
    >>> x.shape, x.dtype, y.dtype, test, np.bincount(y).tolist()
    ((200, 32, 32, 3), dtype('uint8'), dtype('int64'), None, [20, 20, 20, 20, 20, 20, 20, 20, 20, 20])
    """
    limit = _check_limit(limit)
    if isinstance(source, str) and source == "keras":
        return _load_from_keras(limit)
    if isinstance(source, str) and source == "sample":
        return load_sample(limit), None
    if isinstance(source, str) and source == "auto":
        local = _find_local_copy()
        if local == "sample":
            return load_sample(None if limit is None else min(limit, SAMPLE_SIZE)), None
        if local is None:
            return _load_auto_without_local_copy(limit)
        source = local
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"`source` must be {_SOURCES}. Received: source={source!r} of type "
            f"{type(source).__name__}"
        )
    train = load_local(Path(source).expanduser(), cache_dir, limit, verbose)
    return train, None


def _load_auto_without_local_copy(limit):
    """``keras.datasets`` if it works, else the bundled sample with a warning."""
    try:
        return _load_from_keras(limit)
    except Exception as e:  # no internet, no cached download, ...
        keras_error = e
    try:
        train = load_sample(None if limit is None else min(limit, SAMPLE_SIZE))
    except ValueError as e:
        raise ValueError(
            "Could not load CIFAR-10: no local copy was found, "
            "`keras.datasets.cifar10.load_data()` failed "
            f"({type(keras_error).__name__}: {keras_error}) and the bundled "
            f"sample could not be read ({e}). Expected a local copy of "
            f"train-jpg.zip named by the {ENV_VAR} environment variable "
            f"or at {_SHARED_ZIP} relative to the working directory or "
            "the repository root, or internet access. Received: "
            f"source='auto', {ENV_VAR}={os.environ.get(ENV_VAR)!r}, "
            f"cwd={os.getcwd()!r}"
        ) from keras_error
    capped = "" if limit is None or limit <= SAMPLE_SIZE else f" instead of limit={limit}"
    warnings.warn(
        f"Using the CIFAR-10 sample bundled with tf_precrop: only {len(train[1])} "
        f"images{capped} ({len(train[1]) // NUM_CLASSES} per class, no test split), "
        "enough to run code but not to measure accuracy. No local copy was found "
        "and `keras.datasets.cifar10.load_data()` failed "
        f"({type(keras_error).__name__}: {keras_error}). For the full 50,000 "
        f"images, set {ENV_VAR} to a local train-jpg.zip (or put it at "
        f"{_SHARED_ZIP}), or run with internet access so keras can download it; "
        f"set {ENV_VAR}=sample to use the sample without this warning.",
        UserWarning,
        stacklevel=3,
    )
    return train, None


def _check_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit <= 0:
        raise ValueError(
            f"`limit` must be None or a positive int (images per split). Received: limit={limit!r}"
        )
    return int(limit)


def _find_local_copy():
    """A local copy's path, ``"sample"``, or ``None`` (see :data:`ENV_VAR`)."""
    env = os.environ.get(ENV_VAR)
    if env and env.strip().lower() == "none":
        return None
    if env and env.strip().lower() == "sample":
        return "sample"
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise ValueError(
                f"The {ENV_VAR} environment variable names a path that does "
                "not exist. Expected a path to train-jpg.zip or to a folder of "
                "CIFAR-10 JPEGs, 'none' (ignore local copies) or 'sample' (the "
                f"bundled sample). Received: {ENV_VAR}={env!r}"
            )
        return path
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = base / _SHARED_ZIP
        if candidate.is_file():
            return candidate.resolve()
    return None


def _load_from_keras(limit):
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    train = (np.asarray(x_train, np.uint8), np.asarray(y_train, np.int64).reshape(-1))
    test = (np.asarray(x_test, np.uint8), np.asarray(y_test, np.int64).reshape(-1))
    if limit is not None:
        train = _balanced_subset(*train, limit)
        test = _balanced_subset(*test, limit)
    return train, test


def _balanced_subset(x, y, limit):
    """The first ``limit // 10`` (+1 for the first remainder classes) per class."""
    if limit >= len(y):
        return x, y
    per_class = _per_class_counts(limit)
    keep = np.concatenate(
        [np.flatnonzero(y == label)[:count] for label, count in enumerate(per_class)]
    )
    keep.sort()
    return x[keep], y[keep]


def _per_class_counts(limit):
    base, extra = divmod(limit, NUM_CLASSES)
    return [base + (1 if label < extra else 0) for label in range(NUM_CLASSES)]
