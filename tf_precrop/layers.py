"""Serializable layers that tf_precrop's graph understands natively.

``ChannelSplit`` and ``ChannelShuffle`` are the two ShuffleNet V2 building
blocks; writing them as layers (instead of Lambda) keeps models saveable and
loadable in safe mode. Both exist for each Keras line: the Keras 3 classes are
``tf_precrop.layers.ChannelSplit`` / ``ChannelShuffle``; the tf_keras ones come
from ``tf_precrop.layers.for_line("tf_keras")``.

Example:

>>> import keras
>>> from tf_precrop.layers import ChannelSplit, ChannelShuffle
>>> x = keras.Input((8, 8, 16))
>>> a, b = ChannelSplit(2)(x)
>>> y = ChannelShuffle(2)(keras.layers.Concatenate()([a, b]))
>>> tuple(y.shape)
(None, 8, 8, 16)
"""

import functools
import types

from tf_precrop.backend import KERAS3, get_line


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )


def _make_layers(line):
    keras = line.keras
    ops = line.ops

    @line.register_serializable(package="tf_precrop")
    class ChannelSplit(keras.layers.Layer):
        """Splits the last (channel) axis into ``num_splits`` equal parts.

        Args:
            num_splits: number of equal parts (the channel count must divide).

        Returns a list of ``num_splits`` tensors.
        """

        def __init__(self, num_splits=2, **kwargs):
            super().__init__(**kwargs)
            _check_positive_int("num_splits", num_splits)
            self.num_splits = num_splits

        def call(self, inputs):
            return list(ops.split(inputs, self.num_splits, axis=-1))

        def compute_output_shape(self, input_shape):
            channels = input_shape[-1]
            part = None if channels is None else channels // self.num_splits
            return [tuple(input_shape[:-1]) + (part,)] * self.num_splits

        def get_config(self):
            return {**super().get_config(), "num_splits": self.num_splits}

    @line.register_serializable(package="tf_precrop")
    class ChannelShuffle(keras.layers.Layer):
        """ShuffleNet channel shuffle: ``(..., g, C/g)`` transposed to ``(..., C/g, g)``.

        Args:
            groups: number of channel groups to interleave.
        """

        def __init__(self, groups=2, **kwargs):
            super().__init__(**kwargs)
            _check_positive_int("groups", groups)
            self.groups = groups

        def call(self, inputs):
            shape = inputs.shape
            channels = shape[-1]
            dynamic = ops.shape(inputs)
            lead = [dynamic[i] if shape[i] is None else shape[i] for i in range(len(shape) - 1)]
            x = ops.reshape(inputs, lead + [self.groups, channels // self.groups])
            rank = len(shape) + 1
            perm = list(range(rank - 2)) + [rank - 1, rank - 2]
            x = ops.transpose(x, perm)
            return ops.reshape(x, lead + [channels])

        def compute_output_shape(self, input_shape):
            return tuple(input_shape)

        def get_config(self):
            return {**super().get_config(), "groups": self.groups}

    return types.SimpleNamespace(ChannelSplit=ChannelSplit, ChannelShuffle=ChannelShuffle)


@functools.cache
def _layers_of(line_name):
    return _make_layers(get_line(line_name))


def for_line(line="keras3"):
    """Namespace with ``ChannelSplit`` and ``ChannelShuffle`` for one Keras line."""
    name = line if isinstance(line, str) else line.name
    return _layers_of(name)


ChannelSplit = for_line(KERAS3).ChannelSplit
ChannelShuffle = for_line(KERAS3).ChannelShuffle
