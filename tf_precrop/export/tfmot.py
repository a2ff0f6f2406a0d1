"""Interop with the TensorFlow Model Optimization Toolkit (TFMOT).

TFMOT works on tf_keras (Keras 2) models only; build the model with
``tf_keras`` (for example ``tf_precrop.models.resnet20(line="tf_keras")``).

``tensorflow_model_optimization`` is imported lazily, inside these helpers
only. Importing it sets ``TF_USE_LEGACY_KERAS=1`` for the whole process;
:func:`_import_tfmot` restores the variable afterwards and pins the lazy
``tensorflow.keras`` alias to what it was, so Keras 3 code in the same process
keeps working.
"""

import os
import warnings

from tf_precrop.backend import line_of

_INSTALL_HINT = 'Install it with `pip install "tf_precrop[tfmot]"`.'


def _import_tfmot():
    """Imports ``tensorflow_model_optimization`` without leaking its env change."""
    saved = os.environ.get("TF_USE_LEGACY_KERAS")
    if saved is None:
        # Resolve TF's lazy `tensorflow.keras` alias now, as the process would
        # without TFMOT; otherwise TFMOT's import resolves it to tf_keras for
        # everyone. (Only the alias is touched; no model is built with it.)
        import tensorflow as tf

        try:
            getattr(tf.keras, "version", None)
        except Exception:  # pragma: no cover - depends on the install
            pass
    try:
        with warnings.catch_warnings():
            # TFMOT's own version check uses the deprecated distutils.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            import tensorflow_model_optimization as tfmot
    except ImportError as e:
        raise ImportError(
            "TFMOT helpers need the TensorFlow Model Optimization Toolkit "
            f"(tensorflow-model-optimization) and tf_keras. {_INSTALL_HINT} "
            f"Received: {e}"
        ) from e
    finally:
        if saved is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = saved
    return tfmot


def _require_tf_keras(model, func):
    line = line_of(model)
    if not line.supports_tfmot:
        raise TypeError(
            f"{func} uses TFMOT, which needs a tf_keras (Keras 2) model. Expected a "
            "model built with `tf_keras`, e.g. "
            '`tf_precrop.models.resnet20(line="tf_keras")` or `tf_keras.Model(...)`. '
            f"Received: a Keras 3 model of type {type(model).__name__} "
            f"(name={model.name!r})"
        )
    return line


def quantize_aware(model, quantize_scope=None):
    """Wraps a tf_keras model for quantization-aware training (QAT).

    A thin wrapper of ``tfmot.quantization.keras.quantize_model``: fake-quant
    ops are inserted with TFMOT's default 8-bit scheme (Conv/BN/ReLU folding,
    per-channel weights).

    Args:
        model: A tf_keras Functional or Sequential model.
        quantize_scope: Optional dict of custom objects for
            ``tfmot.quantization.keras.quantize_scope`` (custom layers or
            quantize configs).

    Returns:
        A new, uncompiled tf_keras model with fake quantization.

    Raises:
        TypeError: ``model`` is a Keras 3 model.
        ImportError: TFMOT is not installed.

    Example:

    ```python
    qat = quantize_aware(tf_precrop.models.resnet20(line="tf_keras"))
    qat.compile("adam", "sparse_categorical_crossentropy")
    ```
    """
    _require_tf_keras(model, "quantize_aware")
    tfmot = _import_tfmot()
    quantization = tfmot.quantization.keras
    scope = quantization.quantize_scope(quantize_scope or {})
    with scope:
        unsupported = _unsupported_layers(model)
        if not unsupported:
            return quantization.quantize_model(model)
        # Layers TFMOT's default scheme cannot wrap (Rescaling, Normalization:
        # our models' built-in preprocessing) stay float; the rest is annotated.
        return quantization.quantize_apply(_annotate_supported(model, quantization))


def _registry():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()


def _unsupported_layers(model):
    registry = _registry()
    import tf_keras

    return [
        layer.name
        for layer in model.layers
        if not isinstance(layer, tf_keras.layers.InputLayer) and not registry.supports(layer)
    ]


def _annotate_supported(model, quantization):
    import tf_keras

    registry = _registry()

    def clone(layer):
        new = layer.__class__.from_config(layer.get_config())
        return quantization.quantize_annotate_layer(new) if registry.supports(layer) else new

    annotated = tf_keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return annotated


_EMA_DECAY = 0.999  # fixed in TFMOT's MovingAverageQuantizer


def _moving_average_ranges(qat_model, tfmot):
    """(min_var, max_var) pairs of the activation quantizers that use an EMA."""
    quantizers = tfmot.quantization.keras.quantizers
    pairs = []

    def add(quantizer, variables):
        if isinstance(quantizer, quantizers.MovingAverageQuantizer) and isinstance(
            variables, dict
        ):
            if "min_var" in variables and "max_var" in variables:
                pairs.append((variables["min_var"], variables["max_var"]))

    for layer in qat_model.layers:
        output_quantizers = getattr(layer, "_output_quantizers", None) or []
        if output_quantizers and hasattr(layer, "_output_quantizer_vars"):
            add(output_quantizers[0], layer._output_quantizer_vars)
        activation = getattr(getattr(layer, "layer", None), "activation", None)
        quantizer = getattr(activation, "quantizer", None)
        for attr in ("_pre_activation_vars", "_post_activation_vars"):
            if quantizer is not None and hasattr(activation, attr):
                add(quantizer, getattr(activation, attr))
    return pairs


def calibrate_qat_ranges(qat_model, x, num_samples=256):
    """Sets the activation ranges of a fresh QAT model from one batch of data.

    TFMOT's activation quantizers track ``min``/``max`` with an exponential
    moving average (decay 0.999) starting from ``[-6, 6]``, so after a short
    fine-tune (tens of steps) the ranges are still about ``[-6, 6]``: most of
    the 256 int8 levels go unused and the int8 file is needlessly coarse.
    This runs the model once in training mode on up to ``num_samples``
    samples, reads the batch range each moving-average quantizer saw (the
    update ``v1 = d * v0 + (1 - d) * batch`` is inverted) and sets it; every
    other variable (BatchNorm statistics, ...) is restored.

    Args:
        qat_model: A model returned by :func:`quantize_aware`.
        x: Inputs (numpy array or list of arrays, one per model input).
        num_samples: Most samples in the calibration batch.

    Returns:
        The number of (min, max) pairs set.

    Example:

    ```python
    qat = quantize_aware(model)
    calibrate_qat_ranges(qat, x_train[:256])
    ```
    """
    import numpy as np

    _require_tf_keras(qat_model, "calibrate_qat_ranges")
    tfmot = _import_tfmot()
    pairs = _moving_average_ranges(qat_model, tfmot)
    if not pairs:
        return 0
    batch = [np.asarray(a)[:num_samples] for a in x] if isinstance(x, (list, tuple)) else (
        np.asarray(x)[:num_samples]
    )
    snapshot = [(v, v.numpy()) for v in qat_model.variables]
    qat_model(batch, training=True)
    seen = {}
    for min_var, max_var in pairs:
        for var in (min_var, max_var):
            before = next(value for v, value in snapshot if v is var)
            seen[id(var)] = (var.numpy() - _EMA_DECAY * before) / (1.0 - _EMA_DECAY)
    for var, value in snapshot:
        var.assign(seen.get(id(var), value))
    return len(pairs)


def _default_loss(model, y, line):
    import numpy as np

    y = np.asarray(y)
    out_dim = int(model.outputs[0].shape[-1] or 1)
    from tf_precrop._outputs import outputs_probabilities

    from_logits = not outputs_probabilities(model)
    losses = line.keras.losses
    if out_dim > 1 and np.issubdtype(y.dtype, np.integer) and (
        y.ndim == 1 or (y.ndim == 2 and y.shape[-1] == 1)
    ):
        return losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    if out_dim > 1 and y.ndim >= 2 and y.shape[-1] == out_dim:
        return losses.CategoricalCrossentropy(from_logits=from_logits)
    return losses.MeanSquaredError()


def qat_finetune_and_export(
    model,
    x,
    y,
    path,
    epochs=1,
    batch_size=32,
    loss=None,
    optimizer=None,
    representative_data=None,
    int8_io=False,
    num_verify_samples=64,
    calibrate_ranges=True,
    verbose=0,
):
    """QAT → short fine-tune → verified full-integer int8 ``.tflite``.

    Wraps the model with :func:`quantize_aware`, sets its activation ranges
    from ``x`` (:func:`calibrate_qat_ranges`), fine-tunes it on ``(x, y)``
    for ``epochs`` epochs, then exports it with
    :func:`~tf_precrop.export.export_tflite` (``quantize="int8"``), verified
    against the fine-tuned QAT model (top-1 agreement >= 0.95 for a
    classifier).

    Args:
        model: A tf_keras model.
        x: Training inputs (numpy).
        y: Training targets. Integer labels get a sparse cross-entropy,
            one-hot targets a cross-entropy (``from_logits`` unless the last
            layer has a softmax activation), anything else a mean squared error.
        path: Destination ``.tflite`` file.
        epochs: Fine-tuning epochs.
        batch_size: Fine-tuning batch size.
        loss: A loss overriding the default above.
        optimizer: An optimizer; default ``Adam(1e-4)`` (a gentle fine-tune).
        representative_data: Calibration/verification inputs; default ``x``.
        int8_io: Make the file's inputs and outputs int8.
        num_verify_samples: Most samples used for verification.
        calibrate_ranges: Set the activation ranges from ``x`` before the
            fine-tune (:func:`calibrate_qat_ranges`); TFMOT's moving averages
            barely leave their ``[-6, 6]`` start in a short fine-tune.
        verbose: ``fit`` verbosity.

    Returns:
        A tuple ``(qat_model, export)``: the fine-tuned tf_keras QAT model
        and the :class:`~tf_precrop.export.TFLiteExport`.

    Raises:
        TypeError: ``model`` is a Keras 3 model.
        ImportError: TFMOT is not installed.
        ExportError: Conversion failed or the file did not verify.

    Example:

    ```python
    qat, result = qat_finetune_and_export(model, x_train, y_train,
                                          "model_qat_int8.tflite")
    print(result.top1_agreement)
    ```
    """
    from tf_precrop.export.tflite import export_tflite

    line = _require_tf_keras(model, "qat_finetune_and_export")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0. Received: epochs={epochs!r}")
    qat = quantize_aware(model)
    if calibrate_ranges:
        calibrate_qat_ranges(qat, x)
    if epochs > 0:
        qat.compile(
            optimizer=optimizer or line.keras.optimizers.Adam(1e-4),
            loss=loss or _default_loss(model, y, line),
        )
        qat.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose)
    result = export_tflite(
        qat,
        path,
        quantize="int8",
        representative_data=x if representative_data is None else representative_data,
        int8_io=int8_io,
        num_verify_samples=num_verify_samples,
    )
    return qat, result


def prune_unstructured_tfmot(model, sparsity, block_size=(1, 1)):
    """Magnitude pruning with TFMOT, masks applied at once, wrappers stripped.

    Wraps the prunable layers (Conv, Dense, DepthwiseConv kernels; biases and
    BatchNorm are left alone) with ``tfmot.sparsity.keras.prune_low_magnitude``
    and a ``ConstantSparsity(sparsity, begin_step=0)`` schedule, computes and
    applies the masks without training (one pruning step at step 0, the logic
    ``UpdatePruningStep`` and the wrapper run during ``fit``), then returns
    ``strip_pruning`` of it. Every pruned kernel has ``round(size * sparsity)``
    zeros (more if weights tie at the threshold). The weights of the input
    model are not changed.

    Args:
        model: A tf_keras model.
        sparsity: Fraction of zeros in each pruned kernel, in ``[0, 1)``.
        block_size: TFMOT block size (``(1, 1)`` = element-wise).

    Returns:
        A new tf_keras model with plain layers and sparse kernels.

    Raises:
        TypeError: ``model`` is a Keras 3 model.
        ValueError: ``sparsity`` is outside ``[0, 1)``.
        ImportError: TFMOT is not installed.

    Example:

    ```python
    sparse = prune_unstructured_tfmot(model, 0.5)
    ```
    """
    line = _require_tf_keras(model, "prune_unstructured_tfmot")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not (
        0.0 <= float(sparsity) < 1.0
    ):
        raise ValueError(
            f"sparsity must be a number in [0, 1). Received: sparsity={sparsity!r}"
        )
    tfmot = _import_tfmot()
    sparse = tfmot.sparsity.keras
    # Work on a copy so the caller's weights stay dense.
    clone = line.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    schedule = sparse.ConstantSparsity(float(sparsity), begin_step=0, frequency=1)
    wrapped = sparse.prune_low_magnitude(clone, pruning_schedule=schedule, block_size=block_size)
    for layer in wrapped.layers:
        pruning_obj = getattr(layer, "pruning_obj", None)
        if pruning_obj is None:
            continue
        # What UpdatePruningStep + PruneLowMagnitude.call(training=True) do on
        # the first step: step -1 -> 0, mask update (due at step 0), w *= mask.
        layer.pruning_step.assign(0)
        pruning_obj.conditional_mask_update()
        pruning_obj.weight_mask_op()
    return sparse.strip_pruning(wrapped)
