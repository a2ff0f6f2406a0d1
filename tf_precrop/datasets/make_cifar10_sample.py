"""Regenerates ``cifar10_sample.npz`` and its ``README.md`` from the local CIFAR-10 zip.

The sample is the first ``--per-class`` images (by file number) of every class
of ``train-jpg.zip`` (``train/<class>/0000.jpg``, ``0001.jpg``, ...), decoded
with ``tf.io.decode_jpeg`` exactly as :func:`tf_precrop.data.load_cifar10`
decodes a local copy, in the same class-interleaved order. The ``.npz`` is
written byte-for-byte reproducibly (fixed zip timestamps, deflate level 9), so
``--check`` can compare it with the committed file.

Usage (from a checkout, with the zip at ``../shared/data/cifar10/``)::

    python -m tf_precrop.datasets.make_cifar10_sample          # rewrite both files
    python -m tf_precrop.datasets.make_cifar10_sample --check  # exit 1 if stale
    python -m tf_precrop.datasets.make_cifar10_sample --zip /path/to/train-jpg.zip
"""

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NPZ = HERE / "cifar10_sample.npz"
README = HERE / "README.md"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def build_sample(zip_path, per_class=50):
    """The sample's arrays: ``x`` uint8, ``y`` int64, ``names`` and ``source_sha256``.

    Args:
        zip_path: Path to ``train-jpg.zip`` (or a folder of JPEGs).
        per_class: Images per class, the first ones by file number.

    Returns:
        A dict of numpy arrays, in the order they are stored.

    Example:

    >>> arrays = build_sample("../shared/data/cifar10/train-jpg.zip")  # doctest: +SKIP
    >>> arrays["x"].shape  # doctest: +SKIP
    (500, 32, 32, 3)
    """
    from tf_precrop.data._constants import CIFAR10_CLASSES
    from tf_precrop.data._local import LocalCopy, decode, interleaved

    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class <= 0:
        raise ValueError(f"`per_class` must be a positive int. Received: per_class={per_class!r}")
    copy = LocalCopy(Path(zip_path))
    try:
        order = interleaved(copy.files, per_class * len(CIFAR10_CLASSES))
        x, y = decode(copy, order, verbose=0)
    finally:
        copy.close()
    counts = np.bincount(y, minlength=len(CIFAR10_CLASSES))
    if not (counts == per_class).all():
        raise ValueError(
            "The source has too few images of some class for the sample. Expected "
            f"{per_class} per class. Received: counts={counts.tolist()}"
        )
    return {
        "x": x,
        "y": y.astype(np.int64),
        "names": np.array([name for name, _ in order]),
        "source_sha256": np.array(_sha256_file(copy.path) if copy.path.is_file() else ""),
    }


def npz_bytes(arrays):
    """A reproducible compressed ``.npz`` of ``arrays`` (readable by ``np.load``).

    Args:
        arrays: A dict of name -> numpy array (no object arrays).

    Returns:
        The ``.npz`` file's bytes: the same arrays always give the same bytes.

    Example:

    >>> blob = npz_bytes({"y": np.arange(3)})
    >>> blob == npz_bytes({"y": np.arange(3)}), np.load(io.BytesIO(blob))["y"].tolist()
    (True, [0, 1, 2])
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for key, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, buf.getvalue(), compresslevel=9)
    return out.getvalue()


def readme_text(arrays, npz):
    x, y, names = arrays["x"], arrays["y"], arrays["names"]
    per_class = len(y) // 10
    first, last = names[0].split("/")[-1], names[-1].split("/")[-1]
    return f"""# Bundled CIFAR-10 sample

`cifar10_sample.npz` holds {len(y)} real CIFAR-10 training images ({per_class} per
class), 32x32 RGB, decoded to `uint8`: what
`tf_precrop.data.load_cifar10(source="sample")` returns, and what
`source="auto"` falls back to (with a warning) when no full copy is found and
`keras.datasets.cifar10.load_data()` fails (no internet). Enough to run code,
tests and FAST-mode notebooks; far too few to measure accuracy.

## Provenance

- Images: CIFAR-10 (Krizhevsky, 2009, "Learning Multiple Layers of Features
  from Tiny Images"), from the JPEG re-encoding `train-jpg.zip` documented in
  `../shared/data/cifar10/README.md` (JPEG is lossy: pixels differ slightly
  from the original pickles).
- Which images: the first {per_class} files by number of every class,
  `train/<class>/{first}` to `train/<class>/{last}`, for the classes in
  label order (airplane, automobile, bird, cat, deer, dog, frog, horse, ship,
  truck). No selection by content.
- Order: class-interleaved, as `load_cifar10` returns a local copy: index
  `i` is image number `i // 10` of class `i % 10`. So every prefix is
  class-balanced, and `load_cifar10("sample", limit=k)` equals
  `load_cifar10(<the zip>, limit=k)` for every `k <= {len(y)}`.
- Decoder: `tf.io.decode_jpeg(..., channels=3)` (TensorFlow), as for a local copy.
- sha256 of the source zip: `{str(arrays["source_sha256"])}`
- Arrays: `x` uint8 {tuple(x.shape)}, `y` int64 {tuple(y.shape)}, `names` (the
  zip member of every image), `source_sha256`.
- sha256 of `x.tobytes()`: `{hashlib.sha256(x.tobytes()).hexdigest()}`
- sha256 of `y.tobytes()`: `{hashlib.sha256(y.tobytes()).hexdigest()}`
- sha256 of `cifar10_sample.npz`: `{hashlib.sha256(npz).hexdigest()}` ({len(npz):,} bytes,
  deflate level 9, fixed zip timestamps, so regeneration is byte-identical
  with the same zlib)

## Regenerate

From a checkout with the zip at `../shared/data/cifar10/train-jpg.zip`:

```
python -m tf_precrop.datasets.make_cifar10_sample          # rewrites the .npz and this README
python -m tf_precrop.datasets.make_cifar10_sample --check  # exit 1 if either is stale
```
"""


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _default_zip():
    from tf_precrop import data

    found = data._find_local_copy()
    return None if found in (None, "sample") else found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--zip", type=Path, default=None, help="train-jpg.zip (default: found like load_cifar10)"
    )
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--check", action="store_true", help="only check the files are up to date")
    args = parser.parse_args(argv)
    zip_path = args.zip or _default_zip()
    if zip_path is None:
        parser.error("no local CIFAR-10 copy found; pass --zip PATH/train-jpg.zip")
    arrays = build_sample(zip_path, args.per_class)
    npz = npz_bytes(arrays)
    readme = readme_text(arrays, npz)
    if args.check:
        stale = [
            p.name
            for p, new in ((NPZ, npz), (README, readme.encode()))
            if not p.is_file() or p.read_bytes() != new
        ]
        if stale:
            print(
                "stale (run python -m tf_precrop.datasets.make_cifar10_sample):", ", ".join(stale)
            )
            return 1
        print("up to date:", NPZ.name, README.name)
        return 0
    NPZ.write_bytes(npz)
    README.write_text(readme, encoding="utf-8")
    print(f"wrote {NPZ} ({len(npz):,} bytes) and {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
