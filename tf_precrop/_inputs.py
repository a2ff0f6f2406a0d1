"""Model input data as one numpy array per model input: the one coercion helper.

Users hand sample inputs over in many forms: an array, a list or dict of
arrays (several model inputs), ``(x, y)`` or ``(x, y, sample_weight)`` pairs,
a ``tf.data.Dataset``, a generator, or a callable returning an iterable of
batches. :func:`as_input_arrays` turns any of them into a list of numpy arrays,
one per model input in model input order, checked against the model's input
shapes and cast to the model's input dtypes.

Example:

>>> import keras, numpy as np
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
>>> [a.shape for a in as_input_arrays(model, (np.zeros((3, 4)), np.zeros(3)))]
[(3, 4)]
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input.

    Attributes:
        name: Input name (the Keras tensor name without ``:0``).
        shape: Shape with the batch dimension, ``None`` where unknown.
        dtype: Numpy dtype name, e.g. ``"float32"``.
    """

    name: str
    shape: tuple
    dtype: str


def input_specs(model):
    """The model's inputs as :class:`InputSpec`, in model input order.

    Args:
        model: A built Keras 3 or tf_keras model.

    Returns:
        A list of :class:`InputSpec`.

    Example:

    >>> import keras
    >>> input_specs(keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(2)]))
    [InputSpec(name='x', shape=(None, 4), dtype='float32')]
    """
    import tensorflow as tf

    specs = []
    for tensor in model.inputs:
        name = str(getattr(tensor, "name", "") or f"input_{len(specs)}").split(":")[0]
        shape = tuple(None if d is None else int(d) for d in tuple(tensor.shape))
        specs.append(InputSpec(name, shape, tf.as_dtype(tensor.dtype).name))
    return specs


def as_input_arrays(model, data, *, name="data", limit=None):
    """Model input data as a list of numpy arrays, one per model input.

    Every element (batch) of ``data`` is read as model inputs, checked against
    the model's input shapes (one unbatched sample is given a batch axis),
    cast to the model's input dtypes, and the batches are concatenated.

    Args:
        model: A built Keras 3 or tf_keras model.
        data: An array; a list (model input order) or dict (by input name) of
            arrays; an ``(x, y)`` or ``(x, y, sample_weight)`` tuple; a
            ``tf.data.Dataset``, a generator, or a callable returning an
            iterable of any of these.
        name: The argument name used in error messages.
        limit: Most samples to read (``None``: all). Iteration stops once
            ``limit`` samples are read, so an endless generator is fine.

    Returns:
        A list of numpy arrays, one per model input, all with the same number
        of samples on their first axis.

    Raises:
        TypeError: ``data`` (or one of its elements) is of an unsupported kind.
        ValueError: An array does not fit the model input's shape, inputs
            are missing, batch sizes differ, or ``data`` is empty.

    Example:

    ```python
    x, x2 = as_input_arrays(model, {"image": images, "meta": meta}, name="inputs")
    ```
    """
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None. Received: limit={limit!r}")
    specs = input_specs(model)
    chunks = [[] for _ in specs]
    count = 0
    for element in _iter_elements(data, name):
        arrays = _element_inputs(element, specs, name)
        batch = None
        for i, (array, spec) in enumerate(zip(arrays, specs, strict=True)):
            if not fits(array, spec):
                raise ValueError(
                    f"{name} does not match model input '{spec.name}'. Expected "
                    f"shape {spec.shape} (or one sample of it). Received: "
                    f"shape={tuple(array.shape)}"
                )
            if array.ndim == len(spec.shape) - 1:
                array = array[None]
            arrays[i] = array.astype(spec.dtype, copy=False)
            if batch is None:
                batch = array.shape[0]
            elif array.shape[0] != batch:
                raise ValueError(
                    f"{name} gives inputs with different batch sizes. Expected one "
                    f"batch size for all inputs. Received: sizes="
                    f"{[a.shape[0] for a in arrays]}"
                )
        take = batch if limit is None else min(batch, limit - count)
        for i, array in enumerate(arrays):
            chunks[i].append(array[:take])
        count += take
        if limit is not None and count >= limit:
            break
    if count == 0:
        raise ValueError(
            f"{name} is empty. Expected at least one sample. Received: {name} with 0 samples"
        )
    return [np.concatenate(c, axis=0) for c in chunks]


def fits(array, spec):
    """Whether ``array`` is a batch (or one sample) of ``spec``'s input."""
    rank = len(spec.shape)
    if array.ndim not in (rank, rank - 1):
        return False
    tail = array.shape[-(rank - 1) :] if rank > 1 else ()
    return all(s is None or s == a for s, a in zip(spec.shape[1:], tail, strict=True))


def to_numpy(value):
    """A tensor, array or nested list as a numpy array."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value)


def _is_array_like(value):
    return isinstance(value, np.ndarray) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, dict)
    )


def _element_inputs(element, specs, name):
    """One element (a batch) of user data as a list of arrays, model order."""
    if isinstance(element, dict):
        missing = [s.name for s in specs if s.name not in element]
        if missing:
            raise ValueError(
                f"{name} is a dict but lacks model inputs {missing}. Expected keys "
                f"{[s.name for s in specs]}. Received: keys={sorted(element)}"
            )
        return [to_numpy(element[s.name]) for s in specs]
    if _is_array_like(element):
        if len(specs) != 1:
            raise ValueError(
                f"{name} gives one array but the model has {len(specs)} inputs. "
                "Expected a list (model input order) or a dict (by input name) "
                f"of arrays. Received: array of shape {tuple(element.shape)}"
            )
        return [to_numpy(element)]
    if isinstance(element, (list, tuple)):
        items = list(element)
        if len(items) == len(specs) and all(
            _is_array_like(v) and fits(to_numpy(v), s) for v, s in zip(items, specs, strict=True)
        ):
            return [to_numpy(v) for v in items]
        if 1 <= len(items) <= 3:  # (x,), (x, y) or (x, y, sample_weight)
            return _element_inputs(items[0], specs, name)
    raise TypeError(
        f"Could not read model inputs from {name}. Expected an array, a list "
        "or dict of arrays (one per model input), or an (x, y) tuple. "
        f"Received: element of type {type(element).__name__}"
    )


def _iter_elements(data, name):
    """Yields batches from an array, list, dict, Dataset, generator or callable."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        yield from data.as_numpy_iterator()
        return
    if _is_array_like(data) or isinstance(data, (dict, list, tuple)):
        yield data
        return
    if callable(data):
        data = data()
    if hasattr(data, "__iter__") or hasattr(data, "__next__"):
        yield from data
        return
    raise TypeError(
        f"{name} must be a numpy array, a list/dict of arrays, a tf.data.Dataset, "
        "a generator, or a callable returning an iterable of batches. "
        f"Received: {name}={type(data).__name__}"
    )
