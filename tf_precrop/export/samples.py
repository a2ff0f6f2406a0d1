"""Sample inputs for int8 calibration and LiteRT verification.

User data is coerced by the library's one helper,
:func:`tf_precrop._inputs.as_input_arrays` (one float array per model input,
checked against the model's input shapes). Without data, verification draws
seeded random inputs from the model's input signature.

Example:

```python
calibration = collect_samples(model, x_train, 256, "representative_data")
verification = sample_inputs(model, None, 64)  # seeded standard normal
```
"""

import numpy as np

from tf_precrop._inputs import as_input_arrays, input_specs

#: Seed of the random verification inputs.
SEED = 1234


def collect_samples(model, data, limit, name):
    """Up to ``limit`` samples of ``data`` as one array per model input.

    Args:
        model: The Keras model whose inputs the data feeds.
        data: Anything :func:`~tf_precrop._inputs.as_input_arrays` accepts.
        limit: Most samples to read.
        name: The argument name used in error messages.

    Returns:
        A list of numpy arrays, one per model input.

    Example:

    ```python
    (images,) = collect_samples(model, dataset, 64, "inputs")
    ```
    """
    return as_input_arrays(model, data, name=name, limit=limit)


def random_samples(model, count, seed=SEED):
    """``count`` seeded random samples of each model input.

    Floating inputs are standard normal, booleans uniform, integers in
    ``[0, 10)``.

    Args:
        model: The Keras model.
        count: Number of samples.
        seed: Seed of ``numpy.random.default_rng``.

    Returns:
        A list of numpy arrays, one per model input.

    Raises:
        ValueError: An input has an unknown non-batch dimension.

    Example:

    ```python
    (x,) = random_samples(model, 8)
    ```
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in input_specs(model):
        if any(d is None for d in spec.shape[1:]):
            raise ValueError(
                f"Model input '{spec.name}' has unknown dimensions, so random "
                "verification inputs cannot be drawn. Pass `representative_data` "
                f"(or `inputs`) instead. Received: shape={spec.shape}"
            )
        shape = (count,) + tuple(spec.shape[1:])
        if np.issubdtype(np.dtype(spec.dtype), np.floating):
            arrays.append(rng.standard_normal(shape).astype(spec.dtype))
        elif spec.dtype == "bool":
            arrays.append(rng.integers(0, 2, shape).astype(bool))
        else:
            arrays.append(rng.integers(0, 10, shape).astype(spec.dtype))
    return arrays


def sample_inputs(model, data, count, name="inputs"):
    """Up to ``count`` samples of ``data``, or ``count`` random ones if ``data`` is ``None``.

    Args:
        model: The Keras model.
        data: User data (see :func:`collect_samples`) or ``None``.
        count: Most samples (exactly ``count`` when drawn at random).
        name: The argument name used in error messages.

    Returns:
        A list of numpy arrays, one per model input.

    Example:

    ```python
    arrays = sample_inputs(model, x_val, 64)
    ```
    """
    if data is None:
        return random_samples(model, count)
    return collect_samples(model, data, count, name)
