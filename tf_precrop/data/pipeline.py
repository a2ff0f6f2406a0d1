"""Class-balanced train/validation split and the batched ``tf.data`` pipeline."""

import numpy as np
import tensorflow as tf

from tf_precrop.data._constants import CIFAR10_MEAN, CIFAR10_STD


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

    >>> from tf_precrop.data import load_cifar10
    >>> (x, y), _ = load_cifar10("sample", verbose=0)  # 500 images, 50 per class
    >>> (xt, yt), (xv, yv) = train_val_split(x, y, val_size=100)
    >>> len(xt), len(xv), int((yv == 3).sum())
    (400, 100, 10)
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

    >>> from tf_precrop.data import load_cifar10
    >>> (x, y), _ = load_cifar10("sample", verbose=0)
    >>> ds = cifar10_dataset(x, y, batch_size=64, seed=0)
    >>> images, labels = next(iter(ds))
    >>> images.shape, images.dtype
    (TensorShape([64, 32, 32, 3]), tf.float32)
    """
    x, y = _check_pipeline_arguments(x, y, batch_size, normalize, pad_mode)
    n = len(x)
    images = tf.constant(x)
    labels = tf.constant(y.astype(np.int64))

    ds = tf.data.Dataset.range(n)
    if training:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=bool(training and n >= batch_size))
    ds = ds.map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)))

    if training and augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        mode = _PAD_MODES[pad_mode]
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (_pad_crop_flip(batch[0], s, 4, mode), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return _as_float(ds, normalize)


def cifar10_stream(
    x,
    y,
    batch_size=128,
    steps=None,
    start=0,
    augment=True,
    normalize=False,
    seed=0,
    pad_mode="zero",
):
    """Training batches ``start, ..., steps - 1`` of a stream where each batch depends only on its step.

    The stream walks through the data pass after pass: pass ``p`` visits the
    images in the order of a permutation drawn from ``(seed, p)``, in batches
    of ``batch_size`` (a last incomplete batch is dropped, unless there is
    less than one batch: then every batch holds all ``N`` images), and batch
    ``g`` is augmented (pad 4, random crop, random left-right flip) with
    randoms drawn from ``(seed, g)``. Nothing depends on how often the
    dataset was iterated before, so ``start=k`` yields exactly the batches
    that ``start=0`` yields from step ``k`` on: what resuming an interrupted
    run needs (:func:`~tf_precrop.training.train` trains on this stream).
    :func:`cifar10_dataset`, by contrast, draws each pass's order from
    generators that move on whenever an iterator is opened.

    Args:
        x: ``uint8`` (or float) images of shape ``(N, H, W, C)``.
        y: Integer labels of shape ``(N,)``.
        batch_size: Images per batch.
        steps: Where the stream ends (exclusive), in batches from its
            beginning; ``None`` = one pass.
        start: The first batch to yield (``0 <= start <= steps``).
        augment: Apply the pad-crop-flip augmentation.
        normalize: As in :func:`cifar10_dataset`.
        seed: An int: the stream's seed (required; a stream is reproducible
            by construction).
        pad_mode: ``"zero"`` or ``"reflect"``.

    Returns:
        A ``tf.data.Dataset`` of ``steps - start`` batches of ``float32``
        images ``(B, H, W, C)`` and ``int64`` labels ``(B,)``.

    Example:

    >>> from tf_precrop.data import load_cifar10
    >>> (x, y), _ = load_cifar10("sample", verbose=0)                # 500 images
    >>> whole = list(cifar10_stream(x, y, batch_size=100, steps=12, seed=0))
    >>> tail = list(cifar10_stream(x, y, batch_size=100, steps=12, start=7, seed=0))
    >>> len(whole), len(tail), bool((whole[7][0] == tail[0][0]).numpy().all())
    (12, 5, True)
    """
    x, y = _check_pipeline_arguments(x, y, batch_size, normalize, pad_mode)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an int. Received: seed={seed!r}")
    n = len(x)
    batch = min(batch_size, n)
    per_pass = n // batch
    steps = per_pass if steps is None else steps
    for name, value, low in (("steps", steps, 1), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}. Received: {name}={value!r}")
    if start > steps:
        raise ValueError(
            f"`start` must not pass `steps`. Received: start={start}, steps={steps}"
        )
    images = tf.constant(x)
    labels = tf.constant(y.astype(np.int64))
    base = tf.constant([int(seed), 0], tf.int64)
    order_seed = tf.random.experimental.stateless_fold_in(base, 1)
    augment_seed = tf.random.experimental.stateless_fold_in(base, 2)

    def pass_batches(p):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), tf.random.experimental.stateless_fold_in(order_seed, p)
        )
        return tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[: per_pass * batch], (per_pass, batch))
        )

    first_pass = start // per_pass
    last_pass = -(-steps // per_pass)  # ceil
    indices = (
        tf.data.Dataset.range(first_pass, last_pass)
        .flat_map(pass_batches)
        .skip(start - first_pass * per_pass)
        .take(steps - start)
    )
    mode = _PAD_MODES[pad_mode]

    def load(step, idx):
        batch_images = tf.gather(images, idx)
        if augment:
            step_seed = tf.random.experimental.stateless_fold_in(augment_seed, step)
            batch_images = _pad_crop_flip(batch_images, step_seed, 4, mode)
        return batch_images, tf.gather(labels, idx)

    ds = tf.data.Dataset.zip((tf.data.Dataset.range(start, steps), indices))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps - start))
    return _as_float(ds, normalize)


_PAD_MODES = {"zero": "CONSTANT", "reflect": "REFLECT"}


def _check_pipeline_arguments(x, y, batch_size, normalize, pad_mode):
    """``(x, y)`` as arrays, after checking the arguments both pipelines share."""
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
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"`pad_mode` must be 'zero' or 'reflect'. Received: pad_mode={pad_mode!r}")
    if normalize and x.shape[-1] != len(CIFAR10_MEAN):
        raise ValueError(
            "`normalize=True` uses the 3-channel CIFAR-10 statistics. Expected "
            f"images with 3 channels. Received: x.shape={x.shape}"
        )
    return x, y


def _as_float(ds, normalize):
    """``ds`` with ``float32`` images (normalized with the CIFAR-10 statistics if asked), prefetched."""
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
