"""Channel importance of a trained model: one score per channel (per union-find class).

A channel's weights are every slice that touches it: the output slice of each
layer that produces it (kernel column, bias entry) and the input slice of
each layer that reads it (kernel row), wherever it went through concatenations,
splits, shuffles and element-wise layers (the index map of
:mod:`tf_precrop.prune.channels`). Each layer's rule says which slices those
are (:meth:`~tf_precrop.graph.rule_base.LayerRule.channel_weights`).

Criteria (``importance=``):

* ``"l1"`` (default): ``Σ_slices ‖slice‖₁ / size(slice)`` — the mean absolute
  weight of each slice, summed over the slices, so a wide consumer does not
  drown a narrow producer;
* ``"l2"``: ``Σ_slices ‖slice‖₂ / √size(slice)`` (the root mean square);
* ``"bn_scale"``: ``Σ |γ|`` of the BatchNormalization layers the channel goes
  through (network slimming); an error if a pruned group has none;
* ``"taylor"``: ``Σ_slices |Σ_slice w · ∂L/∂w|`` — the first-order change of
  the loss when the slice is zeroed — on the batches of ``data`` (``(x, y)``
  arrays or a ``tf.data.Dataset``; the compiled loss, else cross-entropy);
* ``"random"``: uniform in [0, 1), seeded.

Higher means keep. Normalisation layers' other weights (β, moving statistics)
and per-channel layers (PReLU, LayerScale) are not scored: they follow the
channel but say little about its use.
"""

import numpy as np

from tf_precrop.errors import UnsupportedLayerError
from tf_precrop.graph.compute_rules import BatchNormRule
from tf_precrop.graph.rule_base import weight_names

CRITERIA = ("l1", "l2", "bn_scale", "taylor", "random")
DEFAULT_IMPORTANCE = "l1"


def channel_scores(trace, criterion="l1", *, model=None, data=None, seed=0):
    """Scores per id (indexed by union-find root) and, per root, whether anything scored it.

    Args:
        trace: the :class:`~tf_precrop.prune.channels.Trace` of the model.
        criterion: one of :data:`CRITERIA`.
        model: the model (for ``"taylor"``).
        data: ``(x, y)`` or a dataset (for ``"taylor"``).
        seed: seed of ``"random"``.

    Returns:
        ``(scores, scored)``: two arrays over ids; read them at the root of an id.
    """
    if criterion not in CRITERIA:
        raise ValueError(
            f"Unknown importance criterion. Expected one of {CRITERIA}. Received: "
            f"importance={criterion!r}"
        )
    n = len(trace.uf.parent)
    roots = trace.uf.roots(np.arange(n))
    scores, scored = np.zeros(n), np.zeros(n, dtype=bool)
    if criterion == "random":
        values = np.random.default_rng(seed).random(n)
        scores[roots] = values  # one draw per root (the last write wins, deterministically)
        scored[:] = True
        return scores, scored
    gradients = _taylor_products(model, data) if criterion == "taylor" else None
    line = trace.graph.line
    for call, ins, outs in trace.records:
        layer = call.layer
        if not call.first or not line.is_layer(layer) or not layer.weights:
            continue
        weights = layer.get_weights() if gradients is None else gradients[id(layer)]
        if criterion == "bn_scale":
            if isinstance(call.rule, BatchNormRule):
                names = weight_names(layer)
                if "gamma" in names:
                    ids = roots[ins[0].reshape(-1)]
                    np.add.at(scores, ids, np.abs(weights[names.index("gamma")]))
                    scored[ids] = True
            continue
        for (side, i), slices in call.rule.channel_weights(call, weights).items():
            ids = roots[(ins if side == "in" else outs)[i].reshape(-1)]
            for rows in slices:
                if rows.shape[0] != ids.size:
                    raise UnsupportedLayerError(
                        f"The rule of layer '{call.key}' ({call.class_name}) gives "
                        f"{rows.shape[0]} slices for {ids.size} {side}put channels. "
                        "Expected one slice per channel from `channel_weights`. "
                        f"Received: rule={type(call.rule).__name__}"
                    )
                np.add.at(scores, ids, _reduce(rows, criterion))
                scored[ids] = True
    return scores, scored


def _reduce(rows, criterion):
    rows = np.asarray(rows, dtype=np.float64)
    size = max(rows.shape[1], 1)
    if criterion == "l1":
        return np.abs(rows).sum(axis=1) / size
    if criterion == "l2":
        return np.sqrt((rows**2).sum(axis=1)) / np.sqrt(size)
    return np.abs(rows.sum(axis=1))  # taylor: rows hold w · dL/dw


def _taylor_products(model, data):
    """``{id(layer): [w · mean dL/dw per weight]}`` over the batches of ``data``."""
    import tensorflow as tf

    from tf_precrop.backend import line_of
    from tf_precrop.saliency.base import iter_layers, raw_variable
    from tf_precrop.saliency.gradient import _batches, _resolve_loss

    if data is None:
        raise ValueError(
            "importance='taylor' needs labelled data. Expected `data=(x, y)` arrays "
            "or a tf.data.Dataset of (x, y) batches. Received: data=None"
        )
    line = line_of(model)
    batches = _batches(model, data, "taylor")
    variables = [raw_variable(v) for v in model.trainable_weights]
    first_x, first_y = batches[0]
    loss_fn, _ = _resolve_loss(model, line, None, first_y, model(first_x, training=False))
    total, count = [tf.zeros_like(v) for v in variables], 0
    for x, y in batches:
        with tf.GradientTape() as tape:
            prediction = model(x, training=False)
            value = tf.reduce_mean(tf.cast(loss_fn(tf.convert_to_tensor(y), prediction), "float32"))
        grads = tape.gradient(value, variables)
        n = int(np.shape(y)[0])
        total = [
            t if g is None else t + tf.cast(g, t.dtype) * n
            for t, g in zip(total, grads, strict=True)
        ]
        count += n
    by_var = {id(v): (t / count).numpy() for v, t in zip(variables, total, strict=True)}
    result = {}
    for _, layer in iter_layers(model):
        weights = layer.get_weights()
        result[id(layer)] = [
            w * by_var.get(id(raw_variable(v)), np.zeros_like(w))
            for v, w in zip(layer.weights, weights, strict=True)
        ]
    return result
