"""Top-1 accuracy of a trained classifier: :func:`evaluate`."""

import numpy as np
import tensorflow as tf

from tf_precrop.data import cifar10_dataset


def evaluate(model, x, y=None, batch_size=256, normalize=False):
    """Top-1 accuracy of ``model`` on ``(x, y)`` (or on a dataset ``x``).

    Args:
        model: A Keras 3 or tf_keras classifier (logits or probabilities).
        x: ``uint8`` images ``(N, H, W, C)``, or a ``tf.data.Dataset`` of
            ``(images, labels)`` batches (labels integer or one-hot).
        y: Integer labels ``(N,)``; ``None`` when ``x`` is a dataset.
        batch_size: Batch size for arrays.
        normalize: Normalize arrays with the CIFAR-10 mean/std, as in
            training with ``TrainConfig(normalize=True)``.

    Returns:
        Accuracy as a Python float in ``[0, 1]``.

    Example:

    >>> import numpy as np
    >>> from tf_precrop import models
    >>> from tf_precrop.data import load_cifar10
    >>> (x, y), _ = load_cifar10("sample", limit=200, verbose=0)
    >>> acc = evaluate(models.resnet20(normalize=True), x, y)
    >>> 0.0 <= acc <= 1.0
    True
    """
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError(
                "`y` must be None when `x` is a tf.data.Dataset (labels come "
                f"from the dataset). Received: y of type {type(y).__name__}"
            )
        ds = x
    else:
        if y is None:
            raise ValueError("`y` is required when `x` is an array. Received: y=None")
        ds = cifar10_dataset(
            np.asarray(x),
            np.asarray(y),
            batch_size=batch_size,
            training=False,
            normalize=normalize,
        )

    @tf.function(reduce_retracing=True)
    def predict(images):
        return tf.argmax(model(images, training=False), axis=-1)

    correct = 0
    total = 0
    for images, labels in ds:
        if labels.shape.rank is not None and labels.shape.rank >= 2:
            labels = tf.argmax(labels, axis=-1)
        predicted = predict(images)
        correct += int(tf.reduce_sum(tf.cast(predicted == tf.cast(labels, tf.int64), tf.int32)))
        total += int(tf.shape(labels)[0])
    if total == 0:
        raise ValueError("Cannot evaluate on empty data. Received: 0 examples")
    return correct / total
