"""tf_precrop._inputs.as_input_arrays: every data form to one array per model input."""

import keras
import numpy as np
import pytest

from tf_precrop._inputs import InputSpec, as_input_arrays, input_specs


@pytest.fixture(scope="module")
def one_input():
    inputs = keras.Input((4, 4, 3), name="image")
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))


@pytest.fixture(scope="module")
def two_inputs():
    a = keras.Input((5,), name="features")
    b = keras.Input((2, 2), name="patch")
    h = keras.layers.Concatenate()([a, keras.layers.Flatten()(b)])
    return keras.Model([a, b], keras.layers.Dense(1)(h))


def _images(n, dtype="float64"):
    return np.arange(n * 48).reshape(n, 4, 4, 3).astype(dtype)


def test_input_specs(two_inputs):
    assert input_specs(two_inputs) == [
        InputSpec("features", (None, 5), "float32"),
        InputSpec("patch", (None, 2, 2), "float32"),
    ]


@pytest.mark.parametrize(
    "form",
    ["array", "one_sample", "xy", "xyw", "list", "dataset", "generator", "callable", "tensor"],
)
def test_every_form_gives_float32_arrays(one_input, form):
    import tensorflow as tf

    x = _images(6)
    data = {
        "array": x,
        "one_sample": x[0],
        "xy": (x, np.zeros(6)),
        "xyw": (x, np.zeros(6), np.ones(6)),
        "list": [x],
        "dataset": tf.data.Dataset.from_tensor_slices((x, np.zeros(6))).batch(4),
        "generator": (x[i : i + 2] for i in range(0, 6, 2)),
        "callable": lambda: iter([x[:3], x[3:]]),
        "tensor": tf.constant(x),
    }[form]
    (got,) = as_input_arrays(one_input, data, name="inputs")
    want = x[:1] if form == "one_sample" else x
    assert got.dtype == np.float32 and np.array_equal(got, want.astype("float32"))


def test_limit_stops_reading(one_input):
    def endless():
        while True:
            yield _images(4)

    (got,) = as_input_arrays(one_input, endless, limit=10)
    assert got.shape == (10, 4, 4, 3)


def test_several_inputs_by_list_or_name(two_inputs):
    f, p = np.ones((3, 5)), np.zeros((3, 2, 2))
    by_list = as_input_arrays(two_inputs, [f, p])
    by_name = as_input_arrays(two_inputs, ({"patch": p, "features": f}, np.zeros(3)))
    for got in (by_list, by_name):
        assert [a.shape for a in got] == [(3, 5), (3, 2, 2)]


def test_wrong_shape_names_the_argument(one_input):
    with pytest.raises(ValueError) as info:
        as_input_arrays(one_input, np.zeros((2, 8, 8, 3)), name="representative_data")
    assert str(info.value) == (
        "representative_data does not match model input 'image'. Expected shape "
        "(None, 4, 4, 3) (or one sample of it). Received: shape=(2, 8, 8, 3)"
    )


def test_missing_dict_key(two_inputs):
    with pytest.raises(ValueError, match=r"lacks model inputs \['patch'\].*Received: keys=\['features'\]"):
        as_input_arrays(two_inputs, {"features": np.ones((2, 5))}, name="inputs")


def test_one_array_for_two_inputs(two_inputs):
    with pytest.raises(ValueError, match="data gives one array but the model has 2 inputs.*Received: array of shape"):
        as_input_arrays(two_inputs, np.ones((2, 5)))


def test_different_batch_sizes(two_inputs):
    with pytest.raises(ValueError, match=r"different batch sizes.*Received: sizes=\[3, 2\]"):
        as_input_arrays(two_inputs, [np.ones((3, 5)), np.zeros((2, 2, 2))])


def test_empty_and_unsupported_data(one_input):
    with pytest.raises(ValueError, match="x is empty.*Received: x with 0 samples"):
        as_input_arrays(one_input, iter([]), name="x")
    with pytest.raises(TypeError, match="Received: x=int"):
        as_input_arrays(one_input, 3, name="x")
    with pytest.raises(TypeError, match="Received: element of type list"):
        as_input_arrays(one_input, ["a", "b", "c", "d"], name="x")
    with pytest.raises(ValueError, match="Received: limit=0"):
        as_input_arrays(one_input, _images(2), limit=0)
