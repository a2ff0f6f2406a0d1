"""The coupled L2 penalty ``0.5 * wd * ||W||^2`` on kernels, attached only while training.

Keras 3's own ``SGD(weight_decay=...)`` is decoupled (it decays outside the
momentum); :func:`_kernel_l2` adds the penalty to the loss instead, so the
gradient gets ``wd * W`` before momentum, as ``torch.optim.SGD`` does.
"""

import contextlib

import keras
import tensorflow as tf


def _is_kernel(variable):
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0].endswith("kernel")


class _L2Penalty:
    """``coeff * sum(w ** 2)``, plus a regularizer the variable already had."""

    def __init__(self, coeff, previous=None):
        self.coeff = coeff
        self.previous = previous

    def __call__(self, w):
        penalty = self.coeff * keras.ops.sum(keras.ops.square(w))
        if self.previous is not None:
            penalty = penalty + self.previous(w)
        return penalty


@contextlib.contextmanager
def _kernel_l2(model, line, weight_decay):
    """Adds ``0.5 * weight_decay * ||W||^2`` of every kernel to the model loss."""
    kernels = [v for v in model.trainable_weights if _is_kernel(v)]
    if not weight_decay or not kernels:
        yield kernels
        return
    coeff = 0.5 * float(weight_decay)
    if line.variables_take_regularizer:
        saved = [(v, v.regularizer) for v in kernels]
        for v, previous in saved:
            v.regularizer = _L2Penalty(coeff, previous)
        try:
            yield kernels
        finally:
            for v, previous in saved:
                v.regularizer = previous
    else:
        before = len(model._callable_losses)
        model.add_loss(lambda: coeff * tf.add_n([tf.reduce_sum(tf.square(v)) for v in kernels]))
        try:
            yield kernels
        finally:
            del model._callable_losses[before:]
