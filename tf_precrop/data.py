"""CIFAR-10 loading, splitting and `tf.data` input pipelines.

Three pieces, used by :mod:`tf_precrop.training` and the benchmarks:

- :func:`load_cifar10` reads CIFAR-10 as ``uint8`` arrays, either from a local
  JPEG copy (``train/<class>/<NNNN>.jpg`` in a zip or a folder; decoded once,
  then cached as an ``.npz``) or through
  ``keras.datasets.cifar10.load_data()`` (needs internet, e.g. Colab).
- :func:`train_val_split` holds out a fixed, seeded, class-balanced
  validation split (the local copy has no test split).
- :func:`cifar10_dataset` builds the batched ``tf.data.Dataset`` with the
  standard augmentation (pad 4, random 32x32 crop, random horizontal flip).

Images stay in ``[0, 255]`` as ``float32`` unless ``normalize=True``: the
bundled models normalize inside the model.
"""

import functools
import hashlib
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""Class names; a label is the index of its class name (alphabetical order)."""

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the CIFAR-10 training images, on the [0, 1] scale."""

CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of the CIFAR-10 training images, [0, 1] scale."""

ENV_VAR = "TF_PRECROP_CIFAR10"
"""Environment variable naming a local copy (zip or folder) for ``source="auto"``."""

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "tf_precrop")

_SHARED_ZIP = Path("..", "shared", "data", "cifar10", "train-jpg.zip")
_REPO_ROOT = Path(__file__).resolve().parent.parent
_NUM_CLASSES = len(CIFAR10_CLASSES)
_DECODE_BATCH = 1000
_CACHE_FORMAT = 1


# --------------------------------------------------------------------- loading
def load_cifar10(source="auto", cache_dir=None, limit=None, verbose=1):
    """Loads CIFAR-10 as ``uint8`` images and ``int64`` labels.

    With a local JPEG copy the images come back in a class-interleaved order
    (image 0 of every class, then image 1 of every class, ...), so every
    prefix of the arrays is class-balanced. A local copy has no test split.

    Args:
        source: Where to read from.

            - ``"auto"`` (default): a local copy if one is found, tried in this
              order: the path in the ``TF_PRECROP_CIFAR10`` environment
              variable, ``../shared/data/cifar10/train-jpg.zip`` relative to
              the current directory, then relative to the repository root
              of this package. Otherwise ``keras.datasets.cifar10.load_data()``.
            - ``"keras"``: ``keras.datasets.cifar10.load_data()`` (downloads
              on first use, so it needs internet).
            - a path (``str`` or ``os.PathLike``) to ``train-jpg.zip``, to a
              folder holding ``train/<class>/*.jpg``, ``<class>/*.jpg`` or
              ``train-jpg.zip``.
        cache_dir: Folder for the decoded-array cache of local copies
            (an uncompressed ``.npz``: JPEG-noisy pixels compress by only ~7%,
            and zlib would make the cached load ~5x slower), keyed by the zip's
            size and modification time (a folder: its file names, sizes and
            times). Defaults to ``~/.cache/tf_precrop``. ``False`` turns caching off.
        limit: ``None`` for all images, or a positive int: at most ``limit``
            images per split, class-balanced (``limit // 10`` per class; the
            remainder goes to the first classes). With a local copy and no
            full cache yet, only those images are decoded (fast mode).
        verbose: ``1`` shows a progress bar while decoding, ``0`` is quiet.

    Returns:
        ``((x_train, y_train), test)`` where ``x_train`` is ``uint8`` of shape
        ``(N, 32, 32, 3)``, ``y_train`` is ``int64`` of shape ``(N,)`` and
        ``test`` is ``(x_test, y_test)`` of the same kinds, or ``None`` when
        the source has no test split (the local copy).

    Example:

    >>> (x, y), test = load_cifar10(limit=2000, verbose=0)
    >>> x.shape, x.dtype, y.dtype, test
    ((2000, 32, 32, 3), dtype('uint8'), dtype('int64'), None)
    """
    limit = _check_limit(limit)
    if isinstance(source, str) and source == "keras":
        return _load_from_keras(limit)
    if isinstance(source, str) and source == "auto":
        local = _find_local_copy()
        if local is None:
            try:
                return _load_from_keras(limit)
            except Exception as e:  # no internet, no cached download, ...
                raise ValueError(
                    "Could not load CIFAR-10: no local copy was found and "
                    "`keras.datasets.cifar10.load_data()` failed "
                    f"({type(e).__name__}: {e}). Expected a local copy of "
                    f"train-jpg.zip named by the {ENV_VAR} environment variable "
                    f"or at {_SHARED_ZIP} relative to the working directory or "
                    "the repository root, or internet access. Received: "
                    f"source='auto', {ENV_VAR}={os.environ.get(ENV_VAR)!r}, "
                    f"cwd={os.getcwd()!r}"
                ) from e
        source = local
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "`source` must be 'auto', 'keras' or a path to train-jpg.zip or a "
            f"folder of JPEGs. Received: source={source!r} of type "
            f"{type(source).__name__}"
        )
    train = _load_local(Path(source).expanduser(), cache_dir, limit, verbose)
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
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise ValueError(
                f"The {ENV_VAR} environment variable names a path that does "
                "not exist. Expected a path to train-jpg.zip or to a folder of "
                f"CIFAR-10 JPEGs. Received: {ENV_VAR}={env!r}"
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
    base, extra = divmod(limit, _NUM_CLASSES)
    return [base + (1 if label < extra else 0) for label in range(_NUM_CLASSES)]


class _LocalCopy:
    """The JPEG files of a local copy: a zip or a folder tree.

    The cache key is computed first and cheaply (one ``stat`` for a zip); the
    file index is only built when images have to be decoded.
    """

    def __init__(self, path):
        if path.is_dir() and (path / "train-jpg.zip").is_file():
            path = path / "train-jpg.zip"
        self.path = path
        self._zip = None
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise ValueError(
                    "The CIFAR-10 source file is not a zip archive. Expected "
                    f"train-jpg.zip. Received: source={str(path)!r}"
                )
            stat = path.stat()
            self.key = f"zip-{stat.st_size}-{stat.st_mtime_ns}"
            self.root = None
        elif path.is_dir():
            self.root = path / "train" if (path / "train").is_dir() else path
            self._names = []
            signature = hashlib.sha256()
            for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
                if entry.is_dir():
                    for f in sorted(os.scandir(entry.path), key=lambda e: e.name):
                        rel = f"{entry.name}/{f.name}"
                        self._names.append(rel)
                        st = f.stat()
                        signature.update(f"{rel}:{st.st_size}:{st.st_mtime_ns};".encode())
            self.key = "dir-" + signature.hexdigest()[:16]
        else:
            raise ValueError(
                "The CIFAR-10 source path does not exist. Expected a path to "
                "train-jpg.zip or to a folder of CIFAR-10 JPEGs. Received: "
                f"source={str(path)!r}"
            )

    @functools.cached_property
    def files(self):
        """``files[label]`` = member names of that class, sorted by number."""
        if self.root is None:
            self._zip = zipfile.ZipFile(self.path)
            names = self._zip.namelist()
        else:
            names = self._names
        by_class = {name: [] for name in CIFAR10_CLASSES}
        for name in names:
            parts = name.replace("\\", "/").split("/")
            if len(parts) < 2 or not parts[-1].lower().endswith((".jpg", ".jpeg")):
                continue
            if parts[-2] in by_class:
                by_class[parts[-2]].append(name)
        missing = [c for c, files in by_class.items() if not files]
        if missing:
            raise ValueError(
                "The CIFAR-10 source does not hold JPEGs for every class. "
                "Expected files laid out as train/<class>/<NNNN>.jpg for the "
                f"classes {CIFAR10_CLASSES}. Received: source={str(self.path)!r} "
                f"with no images for {missing}"
            )
        return [sorted(by_class[c], key=_file_sort_key) for c in CIFAR10_CLASSES]

    def read(self, name):
        if self.root is None:
            return self._zip.read(name)
        return (self.root / name).read_bytes()

    def close(self):
        if self._zip is not None:
            self._zip.close()


def _file_sort_key(name):
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def _interleaved(files, limit):
    """(member name, label) pairs: image i of every class, then i + 1, ..."""
    order = []
    longest = max(len(f) for f in files)
    for i in range(longest):
        for label, class_files in enumerate(files):
            if i < len(class_files):
                order.append((class_files[i], label))
                if limit is not None and len(order) == limit:
                    return order
    return order


def _cache_path(cache_dir, key, limit):
    suffix = "" if limit is None else f"-limit{limit}"
    return Path(cache_dir).expanduser() / f"cifar10-train-v{_CACHE_FORMAT}-{key}{suffix}.npz"


def _read_cache(path):
    with np.load(path) as data:
        return data["x"], data["y"]


def _write_cache(path, x, y):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, x=x, y=y)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache folder must not break loading
        tmp.unlink(missing_ok=True)


def _load_local(path, cache_dir, limit, verbose):
    copy = _LocalCopy(path)
    try:
        use_cache = cache_dir is not False
        cache_dir = DEFAULT_CACHE_DIR if cache_dir in (None, True) else cache_dir
        if use_cache:
            # Prefixes of the interleaved order are the class-balanced subsets,
            # so a subset cut from the full cache equals a subset decoded alone.
            own = _cache_path(cache_dir, copy.key, limit)
            if own.is_file():
                return _read_cache(own)
            full = _cache_path(cache_dir, copy.key, None)
            if limit is not None and full.is_file():
                x, y = _read_cache(full)
                return x[:limit].copy(), y[:limit].copy()
        order = _interleaved(copy.files, limit)
        x, y = _decode(copy, order, verbose)
        if use_cache:
            _write_cache(_cache_path(cache_dir, copy.key, limit), x, y)
        return x, y
    finally:
        copy.close()


def _decode(copy, order, verbose):
    """Decodes the JPEGs named in ``order`` with ``tf.io.decode_jpeg``."""
    import keras

    start = time.perf_counter()
    n = len(order)
    if verbose:
        print(f"Decoding {n} CIFAR-10 images from {copy.path} (cached afterwards)")
    progbar = keras.utils.Progbar(n, verbose=1 if verbose else 0, unit_name="image")
    blobs = tf.constant([copy.read(name) for name, _ in order], dtype=tf.string)
    labels = np.fromiter((label for _, label in order), dtype=np.int64, count=n)

    def decode(blob):
        image = tf.io.decode_jpeg(blob, channels=3)
        return tf.ensure_shape(image, (32, 32, 3))

    images = (
        tf.data.Dataset.from_tensor_slices(blobs)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(_DECODE_BATCH)
        .prefetch(2)
    )
    x = np.empty((n, 32, 32, 3), dtype=np.uint8)
    done = 0
    for batch in images.as_numpy_iterator():
        x[done : done + len(batch)] = batch
        done += len(batch)
        progbar.update(done)
    if verbose:
        print(f"Decoded {n} images in {time.perf_counter() - start:.1f} s")
    return x, labels


# ------------------------------------------------------------------- splitting
def train_val_split(x, y, val_size=5000, seed=0):
    """Splits off a fixed, seeded, class-balanced validation set.

    The validation set takes ``val_size / num_classes`` images of every class
    (chosen at random with ``seed``); the rest is the training set. Both keep
    the original order of ``x``. The same arrays and seed always give the
    same split.

    Args:
        x: Images, array of shape ``(N, ...)``.
        y: Integer labels, array of shape ``(N,)``.
        val_size: Size of the validation set; a multiple of the number of
            classes present in ``y``.
        seed: Seed of the selection.

    Returns:
        ``((x_train, y_train), (x_val, y_val))``, disjoint.

    Example:

    >>> (x, y), _ = load_cifar10(limit=2000, verbose=0)
    >>> (xt, yt), (xv, yv) = train_val_split(x, y, val_size=500)
    >>> len(xt), len(xv), int((yv == 3).sum())
    (1500, 500, 50)
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            "`x` and `y` must have the same length and `y` must be 1-D. "
            f"Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    classes = np.unique(y)
    if (
        isinstance(val_size, bool)
        or not isinstance(val_size, (int, np.integer))
        or val_size <= 0
        or val_size % len(classes)
    ):
        raise ValueError(
            "`val_size` must be a positive multiple of the number of classes "
            f"({len(classes)}) so that every class gives the same count. "
            f"Received: val_size={val_size!r}"
        )
    per_class = val_size // len(classes)
    rng = np.random.default_rng(seed)
    val_idx = []
    for label in classes:
        idx = np.flatnonzero(y == label)
        if len(idx) <= per_class:
            raise ValueError(
                f"Class {label} has too few images for a validation share of "
                f"{per_class} with some left for training. Expected more than "
                f"{per_class} images per class. Received: {len(idx)} images of "
                f"class {label}, val_size={val_size}"
            )
        val_idx.append(rng.choice(idx, size=per_class, replace=False))
    val_mask = np.zeros(len(y), dtype=bool)
    val_mask[np.concatenate(val_idx)] = True
    return (x[~val_mask], y[~val_mask]), (x[val_mask], y[val_mask])


# -------------------------------------------------------------------- pipeline
def cifar10_dataset(
    x,
    y,
    batch_size=128,
    training=True,
    augment=True,
    normalize=False,
    seed=None,
    pad_mode="zero",
):
    """A batched ``tf.data.Dataset`` of ``(image, label)`` pairs.

    When ``training``: reshuffled every epoch, the last incomplete batch is
    dropped (fixed shapes, one trace) unless there is less than one batch,
    and with ``augment`` every image is padded by 4 pixels, randomly cropped
    back to its size and randomly flipped left-right (vectorized per batch).
    Always cast to ``float32`` and prefetched.

    Args:
        x: ``uint8`` (or float) images of shape ``(N, H, W, C)``.
        y: Integer labels of shape ``(N,)``.
        batch_size: Images per batch (the global batch under a
            ``tf.distribute`` strategy).
        training: Shuffle, drop the remainder and (with ``augment``) augment.
        augment: Apply the pad-crop-flip augmentation when ``training``.
        normalize: ``False`` keeps pixel values in ``[0, 255]``; ``True``
            rescales to ``[0, 1]`` and normalizes each channel with
            :data:`CIFAR10_MEAN` and :data:`CIFAR10_STD`.
        seed: Seed of the shuffle and the augmentation (``None``: random).
            Each epoch still draws a new order and new crops.
        pad_mode: ``"zero"`` (the usual recipe) or ``"reflect"`` padding.

    Returns:
        A ``tf.data.Dataset`` yielding ``float32`` images ``(B, H, W, C)`` and
        ``int64`` labels ``(B,)``.

    Example:

    >>> (x, y), _ = load_cifar10(limit=2000, verbose=0)
    >>> ds = cifar10_dataset(x, y, batch_size=64, seed=0)
    >>> images, labels = next(iter(ds))
    >>> images.shape, images.dtype
    (TensorShape([64, 32, 32, 3]), tf.float32)
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            "Expected non-empty images of shape (N, H, W, C) and labels of "
            f"shape (N,). Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or (batch_size <= 0)
    ):
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}"
        )
    if pad_mode not in ("zero", "reflect"):
        raise ValueError(f"`pad_mode` must be 'zero' or 'reflect'. Received: pad_mode={pad_mode!r}")
    n = len(x)
    channels = x.shape[-1]
    if normalize and channels != len(CIFAR10_MEAN):
        raise ValueError(
            "`normalize=True` uses the 3-channel CIFAR-10 statistics. Expected "
            f"images with 3 channels. Received: x.shape={x.shape}"
        )
    images = tf.constant(x)
    labels = tf.constant(y.astype(np.int64))

    ds = tf.data.Dataset.range(n)
    if training:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=bool(training and n >= batch_size))
    ds = ds.map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)))

    if training and augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        mode = "REFLECT" if pad_mode == "reflect" else "CONSTANT"
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (_pad_crop_flip(batch[0], s, 4, mode), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    mean = tf.constant(CIFAR10_MEAN, tf.float32) * 255.0
    std = tf.constant(CIFAR10_STD, tf.float32) * 255.0

    def to_float(image, label):
        image = tf.cast(image, tf.float32)
        if normalize:
            image = (image - mean) / std
        return image, label

    return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _pad_crop_flip(images, seed, pad, mode):
    """Pads a batch, then crops every image at a random offset, maybe mirrored."""
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    seed = tf.cast(seed, tf.int64)
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode=mode)
    offsets = tf.random.stateless_uniform(
        (batch, 2), seed=seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32
    )
    flip = tf.random.stateless_uniform((batch, 1), seed=seed + 1) < 0.5
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis]
    cols = tf.range(width)[tf.newaxis]
    cols = offsets[:, 1:] + tf.where(flip, width - 1 - cols, cols)
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)
