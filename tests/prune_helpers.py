"""Helpers of tests/test_prune*.py: random weights, dead channels, snapshots, output checks."""

import numpy as np

from tf_precrop.saliency.base import iter_layers


def randomize(model, seed=0):
    """Random weights everywhere (BN variances positive), so nothing is trivially zero."""
    rng = np.random.default_rng(seed)
    for _, layer in iter_layers(model):
        names = [
            v.path.split("/")[-1] if hasattr(v, "path") else v.name.split("/")[-1].split(":")[0]
            for v in layer.weights
        ]
        new = []
        for name, w in zip(names, layer.get_weights(), strict=True):
            if not np.issubdtype(w.dtype, np.floating):
                new.append(w)
                continue
            value = rng.standard_normal(w.shape).astype(w.dtype) * 0.5
            if "variance" in name:
                value = np.abs(value) + 0.5
            new.append(value)
        layer.set_weights(new)
    return model


def weights_of(model, name):
    layer = model.get_layer(name) if "/" not in name else _nested(model, name)
    return layer, [w.copy() for w in layer.get_weights()]


def _nested(model, name):
    return dict(iter_layers(model))[name]


def zero_out(model, name, idx):
    """A conv/dense layer's output channels ``idx``: kernel columns and bias."""
    layer, w = weights_of(model, name)
    w[0][..., idx] = 0
    if len(w) > 1:
        w[1][idx] = 0
    layer.set_weights(w)


def zero_in(model, name, idx):
    """A conv/dense layer's input channels ``idx`` (kernel rows)."""
    layer, w = weights_of(model, name)
    w[0][..., idx, :] = 0
    layer.set_weights(w)


def zero_bn(model, name, idx):
    layer, w = weights_of(model, name)
    w[0][idx] = 0  # gamma
    w[1][idx] = 0  # beta
    layer.set_weights(w)


def zero_dw(model, name, idx):
    """A depthwise conv (multiplier 1): channel ``idx`` of kernel and bias."""
    layer, w = weights_of(model, name)
    w[0][..., idx, :] = 0
    if len(w) > 1:
        w[1][idx] = 0
    layer.set_weights(w)


def snapshot(model):
    return [(key, [w.copy() for w in layer.get_weights()]) for key, layer in iter_layers(model)]


def assert_unchanged(model, snap):
    now = snapshot(model)
    assert [k for k, _ in now] == [k for k, _ in snap]
    for (key, a), (_, b) in zip(now, snap, strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), key


def relative_error(model, pruned, x):
    import tensorflow as tf

    worst = 0.0
    outs_a = tf.nest.flatten(model(x, training=False))
    outs_b = tf.nest.flatten(pruned(x, training=False))
    assert len(outs_a) == len(outs_b)
    for a, b in zip(outs_a, outs_b, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-12)))
    return worst


def kill_dropped(model, keeps_fn, seed=0):
    """Makes the channels that ``keeps_fn`` drops exactly dead (generic, any model).

    ``keeps_fn(trace, classes)`` returns ``{producer key: kept indices}`` (the
    Trace's producer keys). Every weight slice touching a dropped channel is
    zeroed: conv/dense/depthwise kernels and biases on both sides and the BN
    γ/β of it. Uses the library's channel trace to find where each channel is.
    """
    from tf_precrop.graph import channel_groups
    from tf_precrop.prune.channels import Trace
    from tf_precrop.prune.selection import producer_classes

    trace = Trace(channel_groups(model)).run()
    classes = producer_classes(trace)
    keeps = keeps_fn(trace, classes)
    uf = trace.uf
    dead = set()
    for key, keep in keeps.items():
        producer = trace.producers[key]
        drop = np.setdiff1d(np.arange(producer.ids.size), keep)
        dead.update(uf.roots(producer.ids[drop]).tolist())
    for call, ins, outs in trace.records:
        layer = call.layer
        if not call.first or not getattr(layer, "weights", None):
            continue
        din = [np.flatnonzero(np.isin(uf.roots(a.reshape(-1)), list(dead))) for a in ins]
        dout = [np.flatnonzero(np.isin(uf.roots(a.reshape(-1)), list(dead))) for a in outs]
        w = layer.get_weights()
        _zero_slices(layer, w, din[0] if din else [], dout[0] if dout else [])
        layer.set_weights(w)
    return keeps


def _zero_slices(layer, w, din, dout):
    """Zeroes the weight slices of input channels ``din`` and output channels ``dout``."""
    kind = type(layer).__name__
    if not len(din) and not len(dout):
        return
    groups = int(getattr(layer, "groups", 1) or 1)
    if kind in ("Conv1D", "Conv2D", "Conv3D", "Dense"):
        c_in, c_out = w[0].shape[-2] * groups, w[0].shape[-1]
        if groups == 1:
            w[0][..., din, :] = 0
        elif groups < c_in:
            ci, co = c_in // groups, c_out // groups
            for c in din:
                w[0][..., c % ci, (c // ci) * co : (c // ci + 1) * co] = 0
        w[0][..., dout] = 0
        if len(w) > 1:
            w[1][dout] = 0
    elif kind in ("Conv1DTranspose", "Conv2DTranspose"):
        w[0][..., din] = 0
        w[0][..., dout, :] = 0
        if len(w) > 1:
            w[1][dout] = 0
    elif kind in ("DepthwiseConv1D", "DepthwiseConv2D"):
        w[0][..., din, :] = 0
        if len(w) > 1:
            w[1][dout] = 0
    elif kind in ("SeparableConv1D", "SeparableConv2D"):
        dm = w[0].shape[-1]
        w[0][..., din, :] = 0
        expanded = [c * dm + j for c in din for j in range(dm)]
        w[1][..., expanded, :] = 0
        w[1][..., dout] = 0
        if len(w) > 2:
            w[2][dout] = 0
    elif kind == "BatchNormalization":
        w[0][din] = 0
        w[1][din] = 0
    else:
        raise AssertionError(f"kill_dropped does not know {kind}")
