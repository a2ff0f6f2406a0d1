"""Data-driven scores: SNIP (Lee et al., 2019) and GraSP (Wang et al., 2020).

Both methods need a few labelled batches and a loss:

* ``data`` is either a pair ``(x, y)`` of arrays (split into batches of
  :data:`ARRAY_BATCH_SIZE` samples) or a ``tf.data.Dataset`` yielding
  ``(x, y)`` batches. At most :data:`MAX_BATCHES` batches are used, and every
  sample counts equally (batch results are weighted by batch size).
* ``loss`` is a callable ``loss(y_true, y_pred)`` (or a Keras loss name);
  without it the compiled loss is used if the model is compiled, else sparse
  categorical cross-entropy (categorical cross-entropy for one-hot labels),
  with ``from_logits`` inferred from the output: a softmax activation on the
  output layer (or outputs that are probability vectors) means
  probabilities, anything else logits.

The model runs in inference mode (``training=False``: BatchNormalization uses
its moving statistics, dropout is off), as in the reference implementation of
Tanaka et al.; nothing in the model is modified.

Score conventions (higher always means *keep*):

* SNIP: ``|g * theta|`` with ``g = dL/dtheta`` (the connection sensitivity
  ``|dL/dm|`` at mask ``m = 1``).
* GraSP: the paper scores ``S = -theta * (H g)`` and removes the weights with
  the *highest* ``S`` (their removal reduces gradient flow least). We return
  ``theta * (H g) = -S``, so that keeping the highest returned scores is
  exactly GraSP's rule. ``H g`` is the Hessian-gradient product of the loss,
  computed with nested ``GradientTape``s (no temperature is applied; pass a
  ``loss`` that divides the logits to reproduce the reference code's T=200).
"""

import numpy as np

from tf_precrop._outputs import outputs_probabilities
from tf_precrop.backend import line_of
from tf_precrop.errors import ScoreError
from tf_precrop.saliency.base import Scores, model_and_view, prunable_kernels, raw_variable

#: Maximum number of batches used by SNIP and GraSP.
MAX_BATCHES = 10
#: Batch size used when ``data`` is given as ``(x, y)`` arrays.
ARRAY_BATCH_SIZE = 128


def snip_scores(model, *, data=None, loss=None, layers=None):
    """SNIP connection sensitivity ``|dL/dtheta * theta|``.

    Args:
        model: a Keras 3 or tf_keras model (read only).
        data: ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)``
            batches (see the module docstring).
        loss: optional loss callable or name.
        layers: optional restriction to some layer keys (or a predicate).

    Returns:
        A :class:`Scores` with method ``"snip"``.
    """
    run = _Run(model, data, loss, layers, "snip")
    grads = run.mean_gradient()
    per_layer = {
        key: np.abs(g * w)
        for key, g, w in zip(run.keys, run.flat(grads), run.weights(), strict=True)
    }
    return run.result(per_layer)


def grasp_scores(model, *, data=None, loss=None, layers=None):
    """GraSP scores ``theta * (H g)`` (= minus the paper's score; keep highest).

    Args:
        model: a Keras 3 or tf_keras model (read only).
        data: ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)``
            batches (see the module docstring).
        loss: optional loss callable or name.
        layers: optional restriction to some layer keys (or a predicate).

    Returns:
        A :class:`Scores` with method ``"grasp"``. Scores may be negative.
    """
    run = _Run(model, data, loss, layers, "grasp")
    grads = run.mean_gradient()
    hg = run.mean_hessian_gradient(grads)
    per_layer = {
        key: w * h for key, h, w in zip(run.keys, run.flat(hg), run.weights(), strict=True)
    }
    return run.result(per_layer)


class _Run:
    """Batches, loss and variables of one SNIP/GraSP computation."""

    def __init__(self, model, data, loss, layers, method):
        import tensorflow as tf

        self.tf = tf
        model, view = model_and_view(model)
        self.model = model
        self.line = line_of(model)
        self.method = method
        selected = prunable_kernels(view, layers)
        if not selected:
            raise ValueError(
                f"{method} needs at least one prunable layer. Received: model "
                f"'{model.name}' with layers={layers!r}"
            )
        self.keys = [key for key, _ in selected]
        self.groups, self.variables = [], []
        for _, variables in selected:
            self.groups.append(
                list(range(len(self.variables), len(self.variables) + len(variables)))
            )
            self.variables.extend(raw_variable(v) for v in variables)
        self.batches = _batches(model, data, method)
        first_x, first_y = self.batches[0]
        prediction = self._predict(first_x)
        self.loss_fn, self.info = _resolve_loss(model, self.line, loss, first_y, prediction)
        if self.info.pop("sparse"):
            classes = int(prediction.shape[-1])
            for _, y in self.batches:
                _check_labels(y, classes)
        self.info["batches"] = len(self.batches)
        self.info["samples"] = int(sum(int(np.shape(y)[0]) for _, y in self.batches))

    def _predict(self, x):
        outputs = self.model(x, training=False)
        flat = self.tf.nest.flatten(outputs)
        if len(flat) != 1:
            raise ValueError(
                f"{self.method} supports single-output models (one loss). "
                f"Received: a model with {len(flat)} outputs"
            )
        return flat[0]

    def _loss(self, x, y):
        tf = self.tf
        prediction = self._predict(x)
        value = self.loss_fn(tf.convert_to_tensor(y), prediction)
        return tf.reduce_mean(tf.cast(value, prediction.dtype))

    def mean_gradient(self):
        tf = self.tf
        total, count = None, 0
        for x, y in self.batches:
            with tf.GradientTape() as tape:
                tape.watch(self.variables)
                value = self._loss(x, y)
            grads = _zeros_for_none(tape.gradient(value, self.variables), self.variables, tf)
            n = int(np.shape(y)[0])
            grads = [g * tf.cast(n, g.dtype) for g in grads]
            total = grads if total is None else [a + b for a, b in zip(total, grads, strict=True)]
            count += n
        return [g / tf.cast(count, g.dtype) for g in total]

    def mean_hessian_gradient(self, grads):
        tf = self.tf
        fixed = [tf.stop_gradient(g) for g in grads]
        total, count = None, 0
        for x, y in self.batches:
            with tf.GradientTape() as outer:
                outer.watch(self.variables)
                with tf.GradientTape() as inner:
                    inner.watch(self.variables)
                    value = self._loss(x, y)
                batch_grads = _zeros_for_none(
                    inner.gradient(value, self.variables), self.variables, tf
                )
                z = tf.add_n(
                    [tf.reduce_sum(g * f) for g, f in zip(batch_grads, fixed, strict=True)]
                )
            hg = _zeros_for_none(outer.gradient(z, self.variables), self.variables, tf)
            n = int(np.shape(y)[0])
            hg = [h * tf.cast(n, h.dtype) for h in hg]
            total = hg if total is None else [a + b for a, b in zip(total, hg, strict=True)]
            count += n
        return [h / tf.cast(count, h.dtype) for h in total]

    def flat(self, tensors):
        return [
            np.concatenate([np.asarray(tensors[i], dtype=np.float64).reshape(-1) for i in group])
            for group in self.groups
        ]

    def weights(self):
        return self.flat([v.numpy() for v in self.variables])

    def result(self, per_layer):
        for key, value in per_layer.items():
            if not np.all(np.isfinite(value)):
                raise ScoreError(
                    f"{self.method.upper()} scores of layer '{key}' contain NaN "
                    "or inf (the loss or its derivatives overflowed). Expected "
                    f"finite scores. Received: {int(np.sum(~np.isfinite(value)))} "
                    "non-finite values"
                )
        if not any(np.any(value != 0) for value in per_layer.values()):
            raise ScoreError(
                f"{self.method.upper()} scores are all zero: the loss does not "
                "depend on any scored kernel at this batch (saturated outputs, "
                "a constant loss, or zero weights). Expected some nonzero "
                f"gradient. Received: loss={self.info.get('loss')!r}"
            )
        return Scores(self.method, per_layer, self.info)


def _zeros_for_none(grads, variables, tf):
    return [
        tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
        for g, v in zip(grads, variables, strict=True)
    ]


# -------------------------------------------------------------------- data
_DATA_FORM = (
    "`data` must be a pair `(x, y)` of arrays (batch axis first) or a "
    "`tf.data.Dataset` yielding `(x, y)` batches"
)


def _batches(model, data, method):
    import tensorflow as tf

    if data is None:
        raise ScoreError(
            f"{method.upper()} scores are computed from labelled data, so `data` "
            "is required. Expected `data=(x, y)` arrays (batch axis first) or a "
            "`tf.data.Dataset` yielding `(x, y)` batches. Received: data=None"
        )
    batches = []
    if isinstance(data, tf.data.Dataset):
        for element in data.take(MAX_BATCHES):
            if not isinstance(element, (tuple, list)) or len(element) != 2:
                raise ValueError(
                    f"{_DATA_FORM}. Received: a dataset whose elements are "
                    f"{type(element).__name__}"
                    + (f" of length {len(element)}" if isinstance(element, (tuple, list)) else "")
                )
            x, y = element
            batches.append((tf.nest.map_structure(np.asarray, x), np.asarray(y)))
        if not batches:
            raise ValueError(f"{_DATA_FORM}. Received: an empty dataset")
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        x = tf.nest.map_structure(np.asarray, x)
        y = np.asarray(y)
        xs = tf.nest.flatten(x)
        n = int(np.shape(y)[0]) if np.ndim(y) else -1
        if n <= 0 or any(np.ndim(a) == 0 or np.shape(a)[0] != n for a in xs):
            raise ValueError(
                "`x` and `y` must have the same number of samples on their "
                f"first axis. Received: x shapes={[np.shape(a) for a in xs]}, "
                f"y shape={np.shape(y)}"
            )
        for start in range(0, min(n, MAX_BATCHES * ARRAY_BATCH_SIZE), ARRAY_BATCH_SIZE):
            part = slice(start, start + ARRAY_BATCH_SIZE)
            batches.append((tf.nest.map_structure(lambda a, p=part: a[p], x), y[part]))
    else:
        raise TypeError(f"{_DATA_FORM}. Received: data of type {type(data).__name__}")
    return [(_check_x(model, x), y) for x, y in batches]


def _check_x(model, x):
    """Check ``x`` against the model inputs; integer arrays for a float input are cast."""
    import tensorflow as tf

    inputs = getattr(model, "inputs", None)
    xs = tf.nest.flatten(x)
    if not inputs:
        return x
    if len(xs) != len(inputs):
        raise ValueError(
            f"`x` must provide one array per model input ({len(inputs)}). "
            f"Received: {len(xs)} arrays"
        )
    for array, tensor in zip(xs, inputs, strict=True):
        expected = tuple(tensor.shape)[1:]
        got = tuple(np.shape(array))[1:]
        if len(got) != len(expected) or any(
            e is not None and e != g for e, g in zip(expected, got, strict=True)
        ):
            hint = (
                " (the dataset may not be batched: call `.batch(n)`)"
                if got == expected[1:] or tuple(np.shape(array)) == expected
                else ""
            )
            raise ValueError(
                f"Input data shape does not match the model input. Expected "
                f"shape (batch,) + {expected}. Received: x.shape="
                f"{tuple(np.shape(array))}{hint}"
            )
        want = tf.as_dtype(tensor.dtype)
        kind = np.asarray(array).dtype.kind
        ok = kind in "fiu" if want.is_floating else kind in "iu" if want.is_integer else True
        if not ok or kind in "bcOSUV":
            raise ValueError(
                f"Input data dtype does not match the model input. Expected "
                f"numbers convertible to {want.name}. Received: x.dtype="
                f"{np.asarray(array).dtype}"
            )
    if len(xs) == 1 and tf.as_dtype(inputs[0].dtype).is_floating:
        array = np.asarray(xs[0])
        if array.dtype.kind in "iu":  # integer pixels into a float model
            return array.astype(tf.as_dtype(inputs[0].dtype).as_numpy_dtype)
    return x


def _check_labels(y, classes):
    y = np.asarray(y)
    shape = y.shape
    if y.ndim == 2 and shape[-1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            "Sparse categorical labels must be integer class indices of shape "
            f"(batch,) or (batch, 1). Received: y.shape={shape}"
        )
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(y == np.floor(y))):
        raise ValueError(
            "Sparse categorical labels must be integer class indices. Received: "
            f"y.dtype={y.dtype}, e.g. y[0]={y.reshape(-1)[0]!r}"
        )
    low, high = (y.min(), y.max()) if y.size else (0, 0)
    if low < 0 or high >= classes:
        raise ValueError(
            f"Labels must be class indices in [0, {classes}) for a model with "
            f"{classes} outputs. Received: labels in [{low}, {high}]"
        )


# -------------------------------------------------------------------- loss
def _resolve_loss(model, line, loss, y, prediction):
    keras = line.keras
    info = {}
    if loss is not None:
        fn, name = _as_loss(keras, loss)
        info["loss_source"] = "argument"
    elif _compiled_loss(model) is not None:
        fn, name = _as_loss(keras, _compiled_loss(model))
        info["loss_source"] = "compiled"
        fn = _labels_for(fn, name, y, prediction, info)
    else:
        probabilities = _outputs_probabilities(model, line, prediction)
        y = np.asarray(y)
        one_hot = (
            y.ndim == len(prediction.shape)
            and y.shape[-1] == prediction.shape[-1]
            and prediction.shape[-1] > 1
        )
        cls = (
            keras.losses.CategoricalCrossentropy
            if one_hot
            else keras.losses.SparseCategoricalCrossentropy
        )
        fn = cls(from_logits=not probabilities)
        name = type(fn).__name__
        info["loss_source"] = "default"
        info["from_logits"] = not probabilities
    info["loss"] = name
    info["sparse"] = "sparse" in name.lower() and "categorical" in name.lower()
    return fn, info


def _labels_for(fn, name, y, prediction, info):
    """A one-hot compiled loss (categorical cross-entropy) fed integer class labels.

    A model trained on one-hot targets (e.g. with label smoothing) keeps that
    loss in its compile config; scoring it on ``(x, integer labels)`` one-hot
    encodes the labels to the output's width instead of failing on the rank.
    """
    y = np.asarray(y)
    config_name = str(getattr(fn, "name", "") or name).lower()
    one_hot_loss = "categorical" in config_name and "sparse" not in config_name
    integer = np.issubdtype(y.dtype, np.integer) and (
        y.ndim == len(prediction.shape) - 1 or (y.ndim == len(prediction.shape) and y.shape[-1] == 1)
    )
    if not (one_hot_loss and integer and prediction.shape[-1] > 1):
        return fn
    import tensorflow as tf

    depth = int(prediction.shape[-1])
    info["labels"] = "one-hot encoded for the compiled loss"

    def loss(y_true, y_pred):
        labels = tf.reshape(tf.cast(y_true, "int32"), tf.shape(y_pred)[:-1])
        return fn(tf.one_hot(labels, depth, dtype=y_pred.dtype), y_pred)

    return loss


def _as_loss(keras, loss):
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    if isinstance(loss, str):
        fn = keras.losses.get(loss)
        if fn is None:
            raise ValueError(f"Unknown loss name. Received: loss={loss!r}")
        return fn, getattr(fn, "__name__", None) or type(fn).__name__
    if callable(loss):
        return loss, getattr(loss, "__name__", None) or type(loss).__name__
    raise TypeError(
        "`loss` must be a callable `loss(y_true, y_pred)` or a Keras loss name "
        f"(one output). Received: loss={loss!r}"
    )


def _compiled_loss(model):
    compiled = getattr(model, "compiled", None)  # Keras 3
    if compiled is None:
        compiled = getattr(model, "_is_compiled", False)  # tf_keras
    return getattr(model, "loss", None) if compiled else None


def _outputs_probabilities(model, line, prediction):
    """True if the output ends in softmax (the shared check), or, when the output
    layer says nothing (no ``activation``: a subclassed model, a custom layer), if
    the outputs look like probabilities."""
    if outputs_probabilities(model):
        return True
    layer = _output_layer(model, line)
    if layer is not None and getattr(layer, "activation", None) is not None:
        return False
    p = np.asarray(prediction, dtype=np.float64)
    if p.ndim < 1 or p.shape[-1] < 2:
        return False
    return bool(np.all(p >= 0) and np.all(p <= 1) and np.allclose(p.sum(-1), 1.0, atol=1e-3))


def _output_layer(model, line):
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None
    history = getattr(outputs[0], "_keras_history", None)
    if history is None:
        return None
    layer = history[0]
    if line.is_model(layer) and layer is not model:
        return _output_layer(layer, line)
    return layer
