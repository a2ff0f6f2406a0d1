"""Reading a local JPEG copy of CIFAR-10 (a zip or a folder), with an ``.npz`` cache.

Internal to :func:`tf_precrop.data.load_cifar10`. The images come back in a
class-interleaved order (image 0 of every class, then image 1 of every class,
...), so every prefix is class-balanced.
"""

import functools
import hashlib
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_precrop.data._constants import CIFAR10_CLASSES

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "tf_precrop")
_DECODE_BATCH = 1000
_CACHE_FORMAT = 1


class LocalCopy:
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


def interleaved(files, limit):
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


def load_local(path, cache_dir, limit, verbose):
    """``(x, y)`` of a local copy at ``path``, from the cache when it has them."""
    copy = LocalCopy(path)
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
        order = interleaved(copy.files, limit)
        x, y = decode(copy, order, verbose)
        if use_cache:
            _write_cache(_cache_path(cache_dir, copy.key, limit), x, y)
        return x, y
    finally:
        copy.close()


def decode(copy, order, verbose):
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
