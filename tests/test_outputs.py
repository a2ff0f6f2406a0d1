"""Tests of tf_precrop._outputs: softmax (probabilities) or logits outputs."""

import keras
import pytest
import tensorflow as tf

from tf_precrop._outputs import outputs_probabilities


def _head(activation=None, k=keras):
    """A small functional model ending in a Dense of ``activation``."""
    inputs = k.Input((6,))
    h = k.layers.Dense(5, activation="relu")(inputs)
    return k.Model(inputs, k.layers.Dense(3, activation=activation)(h))


def _wrap(inner, k=keras, after=None):
    """``inner`` used as a layer of an outer functional model, then ``after``."""
    inputs = k.Input((6,))
    h = inner(inputs)
    return k.Model(inputs, after(h) if after is not None else h)


def test_plain_models_softmax_and_logits():
    assert outputs_probabilities(_head("softmax")) is True
    assert outputs_probabilities(_head()) is False
    assert outputs_probabilities(_head("relu")) is False


def test_a_nested_model_ending_in_softmax_gives_probabilities():
    assert outputs_probabilities(_wrap(_head("softmax"))) is True
    # Two levels deep.
    assert outputs_probabilities(_wrap(_wrap(_head("softmax")))) is True


def test_a_nested_model_ending_in_logits_gives_logits():
    assert outputs_probabilities(_wrap(_head())) is False
    assert outputs_probabilities(_wrap(_wrap(_head()))) is False


@pytest.mark.parametrize(
    "after",
    [
        lambda: keras.layers.Activation("softmax"),
        lambda: keras.layers.Softmax(),
        lambda: keras.ops.softmax,
        lambda: keras.activations.softmax,
    ],
    ids=["Activation", "Softmax", "ops.softmax", "activations.softmax"],
)
def test_a_softmax_after_a_nested_logits_model_gives_probabilities(after):
    assert outputs_probabilities(_wrap(_head(), after=after())) is True


def test_other_layers_after_a_nested_softmax_model_are_what_counts():
    assert outputs_probabilities(_wrap(_head("softmax"), after=keras.layers.Dense(3))) is False


def test_sequential_models_nested_in_sequential_models():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    assert outputs_probabilities(keras.Sequential([keras.Input((6,)), inner])) is True
    logits = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    assert outputs_probabilities(keras.Sequential([keras.Input((6,)), logits])) is False


def test_the_output_of_a_multi_output_nested_model_is_followed_by_index():
    inputs = keras.Input((6,))
    logits = keras.layers.Dense(3, name="logits")(inputs)
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(inputs)
    inner = keras.Model(inputs, [logits, probs])
    outer_inputs = keras.Input((6,))
    _, p = inner(outer_inputs)
    assert outputs_probabilities(keras.Model(outer_inputs, p)) is True
    q, _ = inner(outer_inputs)
    assert outputs_probabilities(keras.Model(outer_inputs, q)) is False


def test_tf_keras_models():
    tf_keras = pytest.importorskip("tf_keras")
    assert outputs_probabilities(_head("softmax", tf_keras)) is True
    assert outputs_probabilities(_head(None, tf_keras)) is False
    assert outputs_probabilities(_wrap(_head("softmax", tf_keras), tf_keras)) is True
    assert outputs_probabilities(_wrap(_head(None, tf_keras), tf_keras)) is False
    after = tf_keras.layers.Activation("softmax")
    assert outputs_probabilities(_wrap(_head(None, tf_keras), tf_keras, after=after)) is True
    assert outputs_probabilities(
        _wrap(_head(None, tf_keras), tf_keras, after=tf_keras.layers.Softmax())
    ) is True
    assert outputs_probabilities(_wrap(_head(None, tf_keras), tf_keras, after=tf.nn.softmax))
    inner = tf_keras.Sequential(
        [tf_keras.layers.Dense(3, activation="softmax", input_shape=(6,))]
    )
    assert outputs_probabilities(tf_keras.Sequential([tf_keras.Input((6,)), inner])) is True
