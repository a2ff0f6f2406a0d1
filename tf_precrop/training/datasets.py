"""The input pipelines of :func:`~tf_precrop.training.train` (arrays or ready datasets)."""

import numpy as np
import tensorflow as tf

from tf_precrop.data import cifar10_dataset, cifar10_stream


def _train_dataset(data, config, first_epoch=0, stream_seed=0):
    """``(dataset, steps per epoch, images per step, fit's steps_per_epoch)``.

    Arrays become the :func:`~tf_precrop.data.cifar10_stream` of every
    remaining step (from ``first_epoch``), which ``model.fit`` walks through
    with one iterator (``steps_per_epoch`` set); a ready dataset is used as
    given (repeated when ``config.steps_per_epoch`` is set).
    """
    if isinstance(data, tf.data.Dataset):
        batch = _static_batch(data)
        if batch is not None and batch != config.batch_size:
            raise ValueError(
                "The training dataset's batch size differs from "
                "`config.batch_size`, which sets the scaled learning rate and the "
                "throughput. Expected batches of config.batch_size="
                f"{config.batch_size}. Received: dataset batch size {batch}"
            )
        cardinality = int(data.cardinality())
        if config.steps_per_epoch is not None:
            steps = config.steps_per_epoch
            if cardinality != tf.data.INFINITE_CARDINALITY:
                data = data.repeat()
        elif cardinality > 0:
            steps = cardinality
        else:
            raise ValueError(
                "The training dataset has an unknown or infinite number of "
                "batches. Expected `config.steps_per_epoch` to be set. Received: "
                f"dataset cardinality={cardinality}, steps_per_epoch=None"
            )
        return data, steps, config.batch_size, config.steps_per_epoch
    x, y = _unpack(data, "train_data")
    n = len(x)
    images_per_step = min(config.batch_size, n)
    steps = config.steps_per_epoch or max(n // config.batch_size, 1)
    ds = cifar10_stream(
        x,
        y,
        batch_size=config.batch_size,
        steps=config.epochs * steps,
        start=first_epoch * steps,
        augment=config.augment,
        normalize=config.normalize,
        seed=stream_seed,
    )
    return ds, steps, images_per_step, steps


def _eval_dataset(data, config, batch_size=None):
    if isinstance(data, tf.data.Dataset):
        return data
    x, y = _unpack(data, "val_data")
    return cifar10_dataset(
        x,
        y,
        batch_size=batch_size or config.batch_size,
        training=False,
        normalize=config.normalize,
    )


def _unpack(data, name):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(
            f"`{name}` must be an (x, y) pair of arrays or a tf.data.Dataset. "
            f"Received: {name} of type {type(data).__name__}"
        )
    return np.asarray(data[0]), np.asarray(data[1])


def _static_batch(ds):
    spec = ds.element_spec
    first = spec[0] if isinstance(spec, (tuple, list)) else spec
    shape = getattr(first, "shape", None)
    if shape is None or shape.rank is None or shape.rank == 0:
        return None
    return shape[0]


def _one_hot(ds, num_classes):
    def to_one_hot(x, y):
        if y.shape.rank is not None and y.shape.rank >= 2:
            return x, y
        return x, tf.one_hot(tf.cast(y, tf.int32), num_classes)

    return ds.map(to_one_hot, num_parallel_calls=tf.data.AUTOTUNE)
