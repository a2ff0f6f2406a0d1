"""BatchNormalization statistics re-estimated on data, for pruned models.

A pruned model keeps its BatchNormalization layers' trained moving mean and
variance, but those were measured on the *dense* model's activations: once
channels feeding a layer are gone, its input distribution moves and the stored
statistics no longer normalise it. :func:`recalibrate_batchnorm` measures them
again on a few thousand training images, before or instead of fine-tuning.
"""

import numpy as np

from tf_precrop._inputs import as_input_arrays
from tf_precrop.backend import line_of

#: Samples read from ``data`` by default: 4,096 (32 batches of 128).
DEFAULT_SAMPLES = 4096


def recalibrate_batchnorm(model, data, *, batch_size=128, samples=DEFAULT_SAMPLES, verbose=0):
    """Re-estimates every BatchNormalization layer's moving mean and variance on ``data``.

    The model runs forward in training mode (``model(x, training=True)``,
    eagerly) over ``data`` in batches of ``batch_size``, and every trainable
    BatchNormalization layer (nested models included) sets its moving
    statistics to the **average over the batches** of the batch mean and
    variance (a cumulative average: its ``momentum`` is ``1 - 1/t`` at batch
    ``t``, then restored). With batches of equal size the moving mean is the
    mean over all samples, exactly. This is the usual "BN re-estimation" of
    pruned networks; nothing else in the model changes, and no gradient is
    taken.

    Choices, documented:

    * The model is **updated in place** and returned, as ``model.fit`` updates
      it. Pass a copy to keep the old statistics. :func:`tf_precrop.prune`
      never calls this on your input model: it returns a new model, which you
      then recalibrate.
    * Layers with ``trainable=False`` are frozen and left as they are (Keras
      runs a frozen BatchNormalization in inference mode).
    * Training mode also switches on Dropout and other training-only layers
      during the passes, as every BN re-estimation does; their effect on the
      statistics is the one the model sees while training.
    * A last batch smaller than ``batch_size`` is dropped (when at least one
      full batch exists), so every batch weighs the same.

    Args:
        model: a built Keras 3 or tf_keras model.
        data: training inputs in any form :func:`tf_precrop.prune` takes:
            an array, ``(x, y)`` arrays (labels unused), a list/dict of arrays
            for several inputs, or a ``tf.data.Dataset``/generator of batches.
        batch_size: samples per forward pass. The statistics are batch
            statistics, so use the training batch size.
        samples: most samples read from ``data`` (default 4,096).
        verbose: 1 shows a progress bar.

    Returns:
        ``model``, with new moving statistics.

    Raises:
        ValueError: no BatchNormalization layer to recalibrate, a bad
            ``batch_size`` or ``samples``, or input data that does not fit the
            model (named by :func:`~tf_precrop._inputs.as_input_arrays`).

    Example:

    >>> import numpy as np, tf_precrop
    >>> model = tf_precrop.prune(tf_precrop.models.resnet20(), widths=0.5)
    >>> x = np.random.default_rng(0).uniform(size=(64, 32, 32, 3)).astype("float32")
    >>> model = tf_precrop.recalibrate_batchnorm(model, x, batch_size=32)
    """
    for arg, value in (("batch_size", batch_size), ("samples", samples)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(
                f"Invalid `{arg}`. Expected a positive integer. Received: {arg}={value!r}"
            )
    line = line_of(model)
    layers = [
        layer
        for layer in _all_layers(line, model)
        if isinstance(layer, line.layers.BatchNormalization) and layer.trainable
    ]
    if not layers:
        raise ValueError(
            f"Model '{model.name}' has no trainable BatchNormalization layer, so there are "
            "no statistics to recalibrate. Expected a model with BatchNormalization layers "
            "(frozen ones, trainable=False, are left as they are)."
        )
    arrays = as_input_arrays(model, data, limit=int(samples))
    count = len(arrays[0])
    full = count // batch_size
    batches = full if full else 1
    size = batch_size if full else count
    structure = line.model_input_structure(model)
    progbar = line.keras.utils.Progbar(batches, unit_name="batch") if verbose else None
    momenta = [layer.momentum for layer in layers]
    try:
        for t in range(batches):
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / (t + 1)  # cumulative average; 0 at the first batch
            chunk = [a[t * size:(t + 1) * size] for a in arrays]
            model(line.pack_inputs(structure, chunk), training=True)
            if progbar is not None:
                progbar.update(t + 1)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return model


def _all_layers(line, model):
    for layer in model.layers:
        if line.is_model(layer):
            yield from _all_layers(line, layer)
        else:
            yield layer
