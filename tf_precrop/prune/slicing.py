"""Copies the kept channels' trained weights into the rebuilt (narrower) model.

Each layer's rule slices its own weights
(:meth:`~tf_precrop.graph.rule_base.LayerRule.slice_weights`), given, for each
input and output tensor, the original index of every channel the pruned model
keeps there (from :mod:`tf_precrop.prune.channels`).
"""

import numpy as np

from tf_precrop.errors import UnsupportedLayerError
from tf_precrop.prune.channels import positions
from tf_precrop.saliency.base import iter_layers


def _keeps(old_arrays, new_arrays):
    return [
        positions(old, new) if np.ndim(old) == 1 else None
        for old, new in zip(old_arrays, new_arrays, strict=True)
    ]


def copy_kept_weights(trace, replay, new_model):
    """Sets every weighted layer of ``new_model`` to its original's kept slices.

    Raises:
        UnsupportedLayerError: a rule cannot slice its layer (the message names
            the layer and the method to implement), a shared layer would keep
            different channels at two calls, or slices do not fit.
    """
    line = trace.graph.line
    targets = dict(iter_layers(new_model))
    done = {}
    for (call, ins, outs), (_, new_ins, new_outs) in zip(
        trace.records, replay.records, strict=True
    ):
        layer = call.layer
        if not line.is_layer(layer) or not layer.weights:
            continue
        keep_in, keep_out = _keeps(ins, new_ins), _keeps(outs, new_outs)
        if id(layer) in done:
            first = done[id(layer)]
            same = all(
                a is None or b is None or np.array_equal(a, b)
                for a, b in zip(first[0] + first[1], keep_in + keep_out, strict=False)
            )
            if not same:
                raise UnsupportedLayerError(
                    f"Shared layer '{call.key}' ({call.class_name}) would keep different "
                    "channels at two of its calls. Expected the same kept channels at "
                    f"every call. Received: layer={call.key}"
                )
            continue
        done[id(layer)] = (keep_in, keep_out)
        sliced = call.rule.slice_weights(call, layer.get_weights(), keep_in, keep_out)
        target = targets.get(call.key)
        if target is None:  # pragma: no cover - the rebuilt model has the same keys
            raise UnsupportedLayerError(
                f"The pruned model has no layer '{call.key}'. Expected the same layer "
                f"names as the original. Received: layer={call.key}"
            )
        expected = [tuple(w.shape) for w in target.weights]
        got = [tuple(np.shape(w)) for w in sliced]
        if expected != got:
            raise UnsupportedLayerError(
                f"The rule of layer '{call.key}' ({call.class_name}) sliced its weights "
                f"to {got}, but the pruned layer holds {expected}. Expected "
                f"`slice_weights` to fit the rebuilt layer. Received: rule="
                f"{type(call.rule).__name__}"
            )
        dtypes = [getattr(w.dtype, "name", None) or str(w.dtype) for w in target.weights]
        target.set_weights([np.asarray(w, dtype=d) for w, d in zip(sliced, dtypes, strict=True)])
