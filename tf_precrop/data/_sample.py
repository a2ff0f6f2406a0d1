"""The small CIFAR-10 sample bundled with the package (``source="sample"``).

``tf_precrop/datasets/cifar10_sample.npz`` holds the first 50 training images of
every class of the local JPEG copy (``train/<class>/0000.jpg`` to ``0049.jpg``),
decoded to ``uint8`` and stored in the same class-interleaved order as
:func:`tf_precrop.data.load_cifar10` returns a local copy in, so every prefix
is class-balanced and equals the same prefix of the local copy.
See ``tf_precrop/datasets/README.md`` for its provenance and
``tf_precrop/datasets/make_cifar10_sample.py`` to regenerate it.
"""

from importlib import resources

import numpy as np

from tf_precrop.data._constants import NUM_CLASSES

SAMPLE_FILE = "cifar10_sample.npz"
SAMPLE_PER_CLASS = 50
SAMPLE_SIZE = SAMPLE_PER_CLASS * NUM_CLASSES
"""Images in the bundled sample (50 per class)."""


def sample_resource():
    """The bundled sample file, as an ``importlib.resources`` traversable."""
    return resources.files("tf_precrop.datasets").joinpath(SAMPLE_FILE)


def load_sample(limit=None, resource=None):
    """``(x, y)`` of the bundled sample: its first ``limit`` images (all for ``None``).

    Raises:
        ValueError: ``limit`` is larger than the sample, or the file is missing
            or malformed.
    """
    resource = sample_resource() if resource is None else resource
    if limit is not None and limit > SAMPLE_SIZE:
        raise ValueError(
            f"The bundled CIFAR-10 sample has only {SAMPLE_SIZE} images "
            f"({SAMPLE_PER_CLASS} per class). Expected limit <= {SAMPLE_SIZE}, or "
            "a full copy (a local train-jpg.zip or `source='keras'` with internet). "
            f"Received: limit={limit}"
        )
    try:
        with resource.open("rb") as f, np.load(f, allow_pickle=False) as data:
            x, y = data["x"], data["y"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(
            "Could not read the CIFAR-10 sample bundled with tf_precrop; the "
            "installation may be incomplete (reinstall tf_precrop). Expected a "
            f"readable {SAMPLE_FILE} holding arrays x and y. Received: "
            f"path={str(resource)!r} ({type(e).__name__}: {e})"
        ) from e
    if x.shape != (SAMPLE_SIZE, 32, 32, 3) or x.dtype != np.uint8 or y.shape != (SAMPLE_SIZE,):
        raise ValueError(
            "The CIFAR-10 sample bundled with tf_precrop is malformed (reinstall "
            f"tf_precrop). Expected x of shape ({SAMPLE_SIZE}, 32, 32, 3) uint8 and "
            f"y of shape ({SAMPLE_SIZE},). Received: x.shape={x.shape}, "
            f"x.dtype={x.dtype}, y.shape={y.shape}"
        )
    y = y.astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y
