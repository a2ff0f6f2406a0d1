"""Iterative SynFlow (Tanaka et al., 2020), data-free, fast on CPU.

What is computed
----------------
SynFlow scores the *linearised* network: a copy of the model in which

* every variable is replaced by its absolute value ``|theta|`` (kernels,
  biases, BatchNormalization gamma/beta and moving statistics - what the
  reference implementation does to the whole state dict);
* every activation (``activation=`` arguments and activation layers: ReLU,
  ReLU6, softmax, swish, ...) is the identity, and preprocessing layers
  (``Rescaling``, ``Normalization``) are dropped, so that the network computes
  the path sum ``R = 1^T (prod_l |W_l|) 1`` of the paper even where its
  activations are not the identity on positive numbers (ReLU6 saturates,
  softmax sums to one);
* BatchNormalization runs in inference mode, as one per-channel affine map
  ``scale * x + offset`` with ``scale = |gamma| / sqrt(|var| + eps)`` and
  ``offset = |beta| - |mean| * scale`` (the same function as Keras' layer,
  computed once in float64; fewer ops to trace and run);
* centred normalisations (``LayerNormalization``, ``GroupNormalization``)
  keep only their affine part, ``|gamma| * x + |beta|``: the mean subtraction
  would make activations of the positive network negative, and the path sum
  ``R`` could then cancel to zero or below depending on the initial weights
  (the same architecture scored or refused by chance). Dropping the
  normalising statistics matches BatchNormalization here, whose inference
  statistics are constants at initialisation.

The input is all ones (batch 1), ``R`` is the sum of all outputs and the score
of a kernel weight is ``|dR/dtheta * theta|``. The iterative schedule of the
paper is used: for ``k = 1..n`` the scores are recomputed with the current
masks, and the top ``target_density ** (k / n)`` fraction of all scored
weights (one global threshold) is kept; the mask is applied to the weights
(``theta := theta * mask``) before the next round.

Returned scores are those of the last round, ``n``: weights pruned in earlier
rounds have score exactly 0, and a global threshold at ``target_density`` on
them reproduces the final masks exactly (kept weights score above every
pruned weight). Weights pruned only in the last round keep their (small)
scores, so thresholds slightly above the target remain meaningful.

Speed
-----
A naive eager loop costs about 0.67 s per ResNet50 pass at 224x224, 67 s for
100 rounds. Here:

1. Two traced ``tf.function`` calls per round: forward and backward
   (kernel gradients only, which stay TensorFlow tensors), then the mask
   (``theta := theta * (|g * theta| >= t)``); masks live in the copied
   kernel variables themselves, so nothing is retraced between rounds and
   nothing large is copied out. 1x1 stride-1 convolutions run as ``Dense``
   layers on the channel axis (same map, same flat kernel order), whose
   kernel gradient is cheaper.
2. Intermediate thresholds are the exact quantile of a fixed, stratified
   random sample of ``SAMPLE_SIZE`` (``2**16``) scores (all scores for
   smaller models); the kept fraction of an intermediate round may then be
   off by about ``2e-3``. The last round is exact (see above).
3. Resolution. With all-ones input the linearised activations are spatially
   constant except near borders, where zero padding removes taps; a global
   average pool or the spatial sum only adds a global factor, which does not
   change a ranking. Per-layer densities therefore depend on resolution only
   through border effects, and SynFlow runs by default at the model's own
   resolution capped at :data:`MAX_SIDE` (96) pixels per spatial side; at
   this size a pass costs little more than at 32-64 px (the per-round cost
   is dominated by reading and writing the kernels). The benchmark
   ``benchmarks/synflow_resolution.py`` compares per-layer densities (the
   kept fraction of each layer at the target) at 96 px and at 224 px for
   ResNet50 and MobileNetV2 (100 rounds, target densities 0.5/0.2/0.1): the
   largest difference over all layers was 0.020-0.024 over repeated runs
   (mean 0.001-0.005; runs differ slightly because near-ties are decided by
   float rounding), within :data:`RESOLUTION_TOLERANCE` = 0.03. At 64 px,
   where the last stage of these networks is 2x2 (every pixel on a border),
   it reached 0.054. Models whose weights depend on the resolution
   (``Flatten`` followed by ``Dense``) fall back to full resolution;
   ``Scores.info`` says so.

Numerics
--------
``R`` grows like a product of per-layer gains (about ``1e65`` for ResNet50)
and overflows float32. When the linearised network is positively homogeneous
of degree one in its input (checked numerically: zero biases, as at
initialisation, and no multiplicative gates), scaling the input by ``s`` and
the backward seed by ``s'`` scales every score by ``s * s'`` exactly (powers
of two) and is undone exactly on the returned float64 scores. Both are set
to ``R ** -0.5`` each round, so forward activations and backward gradients
stay within about ``[R ** -0.5, R ** 0.5]``, which fits float32 for ``R`` up
to ``2**228`` (``4e68``). ResNet50 at initialisation has ``R = 2**218`` at
96 px and ``2**220.5`` at 224 px; there the scores agree with a float64 run
to 3e-6 relative (2e-5 with ``R = 2**228``) and the per-layer densities are
identical.
Otherwise (biases, gates, larger ``R``) the copy runs unscaled in float32
when ``R`` fits (below ``2**90``), else in float64 (a few times slower).
NaN/inf or all-zero scores raise :class:`~tf_precrop.errors.ScoreError`
naming the layer; a plan is never made from them.
"""

import functools
import math
import time

import numpy as np

from tf_precrop.backend import get_line, line_of
from tf_precrop.densities import kth_largest
from tf_precrop.errors import ScoreError, UnsupportedModelError
from tf_precrop.saliency.base import (
    Scores,
    check_graph_model,
    clone_model,
    copy_weights,
    iter_layers,
    layer_kernels,
    prunable_kernels,
    raw_variable,
    spatial_axes,
)

#: Default cap, in pixels, on each spatial side of the SynFlow input.
MAX_SIDE = 96
#: Bound on the per-layer density difference between SynFlow at ``MAX_SIDE``
#: and at 224 px (measured at most 0.024 on ResNet50 and MobileNetV2 over
#: repeated runs; see the module docstring).
RESOLUTION_TOLERANCE = 0.03
#: Number of scores sampled to place intermediate thresholds.
SAMPLE_SIZE = 2**16

_ACTIVATION_LAYERS = frozenset(
    {"Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU"}
)
_DROPPED_LAYERS = frozenset({"Rescaling", "Normalization"})
#: Normalisations that subtract a mean; the linearised copy keeps their affine part.
_CENTRED_NORMS = frozenset({"LayerNormalization", "GroupNormalization"})
# Layers and Keras 3 ops whose output is not of degree one in their input(s):
# their presence rules out the power-of-two rescaling (see "Numerics").
_NON_HOMOGENEOUS = frozenset(
    {
        "Multiply",
        "Dot",
        "Attention",
        "AdditiveAttention",
        "MultiHeadAttention",
        "GroupQueryAttention",
        "UnitNormalization",
        "RMSNormalization",
        "SpectralNormalization",
        "Lambda",
        "TFOpLambda",
        "SlicingOpLambda",
        "Divide",
        "TrueDivide",
        "Matmul",
        "Einsum",
        "Power",
        "Exp",
        "Log",
        "Sqrt",
        "Square",
        "Reciprocal",
        "Sigmoid",
        "Tanh",
    }
)
_LOG2_MAX_GAIN_FLOAT32 = 228  # balanced: activations up to about 2**114 < 2**128
_LOG2_MAX_UNSCALED_FLOAT32 = 90


def synflow_scores(
    model,
    *,
    target_density=None,
    rounds=100,
    seed=None,
    verbose=1,
    layers=None,
    input_shape=None,
):
    """Iterative SynFlow scores (see the module docstring for the details).

    Args:
        model: a built Functional or Sequential model (Keras 3 or tf_keras).
            It is never modified: SynFlow runs on a linearised copy.
        target_density: final fraction of scored weights to keep, in (0, 1];
            the schedule keeps ``target_density ** (k / rounds)`` after round
            ``k``. ``None`` gives single-shot SynFlow (one pass, no masking).
        rounds: number of rounds ``n`` (100 in the paper).
        seed: seed of the threshold sample (only used by models with more
            than ``SAMPLE_SIZE`` scored weights); ``None`` means 0.
        verbose: 0 silent, 1 progress bar.
        layers: optional restriction to some layer keys (or a predicate).
        input_shape: per-sample input shape to run at; ``None`` caps each
            spatial side of the model's input at :data:`MAX_SIDE` pixels.

    Returns:
        A :class:`Scores` with method ``"synflow"``.
    """
    start = time.perf_counter()
    line = line_of(model)
    rounds = _check_rounds(rounds)
    check_graph_model(model)
    if target_density is None:
        rounds = 1
    selected = prunable_kernels(model, layers)
    if not selected:
        raise ValueError(
            "SynFlow needs at least one prunable layer (Conv*/Dense/"
            f"DepthwiseConv*/SeparableConv*). Received: model '{model.name}' "
            f"with layers={layers!r}"
        )
    keys = [key for key, _ in selected]
    full_shape, shape, info = _choose_shape(model, input_shape)

    for dtype in ("float32", "float64"):
        try:
            engine, shape, mode = _prepare(model, keys, shape, full_shape, dtype, seed, info)
            per_layer = _iterate(engine, line, rounds, target_density, verbose)
            break
        except _NeedFloat64:  # float32 cannot hold this network's path sums
            continue
    info.update(
        {
            "input_shape": tuple(shape),
            "full_input_shape": tuple(full_shape),
            "reduced_resolution": tuple(shape) != tuple(full_shape),
            "dtype": dtype,
            "scaling": mode,
            "rounds": rounds,
            "target_density": target_density,
            "iterative": target_density is not None,
            "sampled_thresholds": not engine.exact,
        }
    )

    info["log2_R"] = engine.log2_r
    info["seconds"] = time.perf_counter() - start
    return Scores("synflow", per_layer, info)


class _NeedFloat64(Exception):
    """float32 overflowed: the run is restarted on a float64 copy."""


def _prepare(model, keys, shape, full_shape, dtype, seed, info):
    clone, shape, note = _linearised_clone(model, shape, full_shape, dtype)
    if note:
        info["resolution_note"] = note
    engine = _Engine(clone, keys, dtype, seed)
    mode = engine.calibrate()
    if mode is None:
        raise _NeedFloat64()
    return engine, shape, mode


def _iterate(engine, line, rounds, target_density, verbose):
    progbar = None
    if verbose:
        progbar = line.keras.utils.Progbar(rounds, verbose=verbose, unit_name="round")
    for k in range(1, rounds):
        engine.prune_round(target_density ** (k / rounds))
        if progbar is not None:
            progbar.update(k)
    per_layer = engine.final_scores()
    if progbar is not None:
        progbar.update(rounds)
    return per_layer


def _check_rounds(rounds):
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(
            f"`rounds` must be a positive integer (SynFlow iterations). Received: rounds={rounds!r}"
        )
    return rounds


# ------------------------------------------------------------- resolution
def _choose_shape(model, input_shape):
    info = {}
    full = tuple(model.inputs[0].shape)[1:]
    if len(model.inputs) != 1:
        if input_shape is not None:
            raise ValueError(
                "`input_shape` is only supported for single-input models. "
                f"Received: {len(model.inputs)} inputs, input_shape={input_shape!r}"
            )
        info["resolution_note"] = "multi-input model: run at full resolution"
        return full, full, info
    if input_shape is not None:
        shape = tuple(None if d is None else int(d) for d in input_shape)
        bad = len(shape) != len(full) or any(
            f is not None and s != f
            for axis, (s, f) in enumerate(zip(shape, full, strict=True))
            if axis not in spatial_axes(model)
        )
        if bad or any(d is None or d < 1 for d in shape):
            raise ValueError(
                "`input_shape` must be a per-sample shape (no batch axis) with "
                f"the model's rank and channels, e.g. {_example_shape(full)}. "
                f"Received: input_shape={input_shape!r}"
            )
        return full, shape, info
    shape = list(full)
    axes = spatial_axes(model)
    for axis in range(len(shape)):
        if axis in axes:
            shape[axis] = MAX_SIDE if shape[axis] is None else min(shape[axis], MAX_SIDE)
        elif shape[axis] is None:
            raise ValueError(
                f"Model input has an unknown non-spatial size at axis {axis + 1}. "
                "Expected a known channel size, or pass `input_shape`. "
                f"Received: model input shape={(None,) + full}"
            )
    return full, tuple(shape), info


def _example_shape(full):
    return tuple(MAX_SIDE if d is None else d for d in full)


def _linearised_clone(model, shape, full_shape, dtype):
    """The linearised copy at ``shape``, or at full resolution if that fails."""
    try:
        return _build_clone(model, shape, dtype), shape, None
    except (ValueError, UnsupportedModelError) as e:
        if tuple(shape) == tuple(full_shape) or any(d is None for d in full_shape):
            raise
        note = (
            f"could not run at {tuple(shape)} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}); fell back to full resolution "
            f"{tuple(full_shape)}"
        )
        return _build_clone(model, full_shape, dtype), full_shape, note


def _is_pointwise_conv(layer):
    """A Conv2D that is a per-pixel matrix product (1x1, stride 1, one group)."""
    return (
        type(layer).__name__ == "Conv2D"
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and getattr(layer, "groups", 1) == 1
        and getattr(layer, "data_format", "channels_last") == "channels_last"
    )


def _build_clone(model, shape, dtype):
    """The linearised copy (see the module docstring) at input ``shape``.

    Besides linearising, 1x1 stride-1 ``Conv2D`` layers become ``Dense``
    layers on the channel axis (the same map; kernel ``(1, 1, n, m)`` becomes
    ``(n, m)`` with the same flat order, so scores line up): TensorFlow's
    kernel gradient for a matrix product is cheaper than for a convolution.
    """
    line = line_of(model)
    dropped, pointwise, batch_norms = set(), set(), set()

    def linearise(layer, config):
        name = type(layer).__name__
        if name == "BatchNormalization":  # inference mode: a per-channel affine map
            batch_norms.add(id(layer))
            axis = config["axis"]
            return _norm_affine(line.name)(
                axis=list(axis) if isinstance(axis, list | tuple) else [axis],
                center=True,
                scale=True,
                name=layer.name,
                dtype=dtype,
            )
        if name in _DROPPED_LAYERS or (name in _ACTIVATION_LAYERS and name != "Activation"):
            dropped.add(id(layer))
            return line.layers.Activation("linear", name=layer.name, dtype=dtype)
        if name in _CENTRED_NORMS:
            axis = config["axis"]
            return _norm_affine(line.name)(
                axis=list(axis) if isinstance(axis, list | tuple) else [axis],
                center=config.get("center", True),
                scale=config.get("scale", True),
                name=layer.name,
                dtype=dtype,
            )
        if _is_pointwise_conv(layer):
            pointwise.add(id(layer))
            return line.layers.Dense(
                layer.filters,
                use_bias=layer.use_bias,
                name=layer.name,
                dtype=dtype,
                kernel_initializer="zeros",
            )
        if "activation" in config:
            config["activation"] = "linear"
        for key in config:  # weights are copied over: skip random init
            if key.endswith("_initializer") and config[key] is not None:
                config[key] = "zeros"
        return None

    clone = clone_model(model, linearise, input_shape=shape, dtype=dtype)
    for output in clone.outputs:
        if any(d == 0 for d in tuple(output.shape)[1:]):
            raise ValueError(
                f"Model output has an empty axis at input shape {tuple(shape)}. "
                f"Received: output shape={tuple(output.shape)}"
            )
    skip = {key for key, layer in iter_layers(model) if id(layer) in dropped}

    def absolute(key, layer, weights):
        if id(layer) in batch_norms:
            return _batch_norm_affine(layer)
        result = []
        for w in weights:
            w = np.asarray(w)
            if np.issubdtype(w.dtype, np.floating):
                w = np.abs(w)
            if id(layer) in pointwise and w.ndim == 4:
                w = w.reshape(w.shape[2:])
            result.append(w)
        return result

    copy_weights(model, clone, transform=absolute, skip=skip)
    return clone


def _batch_norm_affine(layer):
    """``[scale, offset]`` of a linearised BatchNormalization in inference mode.

    With every parameter replaced by its absolute value, inference-mode
    BatchNormalization is ``|gamma| * (x - |mean|) / sqrt(|var| + eps) + |beta|``
    = ``scale * x + offset``; computed in float64, applied by ``NormAffine``.
    Read from the layer's attributes, so extra weights (tf_keras'
    ``renorm`` statistics, unused at inference) do not matter.
    """

    def value(variable):
        return np.abs(np.asarray(variable.numpy(), dtype=np.float64))

    mean, variance = value(layer.moving_mean), value(layer.moving_variance)
    gamma = value(layer.gamma) if layer.gamma is not None else 1.0
    beta = value(layer.beta) if layer.beta is not None else 0.0
    scale = np.broadcast_to(gamma / np.sqrt(variance + float(layer.epsilon)), mean.shape)
    return [scale, beta - mean * scale]


@functools.cache
def _norm_affine(line_name):
    """``NormAffine`` layer class for one Keras line (see the module docstring)."""
    line = get_line(line_name)

    class NormAffine(line.layers.Layer):
        """The affine part of a normalisation: ``gamma * x + beta``.

        Same weights (``gamma`` then ``beta``, each optional, over ``axis``)
        as LayerNormalization/GroupNormalization, so weights copy one to one;
        a BatchNormalization's are folded first (see ``_batch_norm_affine``).
        """

        def __init__(self, axis, center, scale, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True
            self.axis, self.center, self.scale = list(axis), bool(center), bool(scale)

        def build(self, input_shape):
            rank = len(input_shape)
            axes = sorted(a % rank for a in self.axis)
            shape = tuple(input_shape[a] for a in axes)
            self._broadcast = [input_shape[d] if d in axes else 1 for d in range(rank)]
            self.gamma = self.add_weight(name="gamma", shape=shape) if self.scale else None
            self.beta = self.add_weight(name="beta", shape=shape) if self.center else None
            super().build(input_shape)

        def call(self, inputs, mask=None):  # noqa: ARG002 - BatchNormalization takes a mask
            import tensorflow as tf

            if self.gamma is not None:
                inputs = inputs * tf.reshape(tf.cast(self.gamma, inputs.dtype), self._broadcast)
            if self.beta is not None:
                inputs = inputs + tf.reshape(tf.cast(self.beta, inputs.dtype), self._broadcast)
            return inputs

        def compute_output_shape(self, input_shape):
            return input_shape

    return NormAffine


def _non_homogeneous_ops(model):
    """Names of layers/ops that break R(s * x) == s * R(x) (gates, norms, ...)."""
    found = []

    def walk(container):
        ops = getattr(container, "operations", None) or container.layers
        for op in ops:
            if hasattr(op, "layers") and hasattr(op, "inputs") and op is not container:
                walk(op)
            elif type(op).__name__ in _NON_HOMOGENEOUS:
                found.append(op.name)

    walk(model)
    return found


# ------------------------------------------------------------------ engine
class _Engine:
    """Runs the linearised copy; the masks live in its kernels.

    A round is two traced calls. ``score_pass`` runs forward and backward to
    the kernels and returns ``R``, the kernel gradients (kept as TensorFlow
    tensors, never copied out) and the scores at a fixed sample of positions.
    The threshold is then the exact quantile of that sample (a NumPy partial
    sort, microseconds; TensorFlow's ``top_k`` took about 5 ms a round), and
    ``mask`` sets ``kernel := kernel where |g * kernel| >= t, else 0``.
    Neither call is XLA-compiled: on ResNet50 compiling the fused mask took
    about 1.4 s, more than it saved over 100 rounds (about 6 ms a round).
    """

    def __init__(self, clone, keys, dtype, seed):
        import tensorflow as tf

        self.tf = tf
        self.clone = clone
        self.keys = keys
        self.dtype = tf.as_dtype(dtype)
        layers = dict(iter_layers(clone))
        self.groups, kernels = [], []
        for key in keys:
            variables = layer_kernels(layers[key])
            self.groups.append(list(range(len(kernels), len(kernels) + len(variables))))
            kernels.extend(raw_variable(v) for v in variables)
        self.kernels = kernels
        self.grads = None  # gradients of the last pass, until the kernels are masked
        sizes = [int(np.prod(v.shape)) for v in kernels]
        total = sum(sizes)
        self.density = 1.0  # density kept by the masks so far
        self.exact = total <= SAMPLE_SIZE
        self.indices = None
        if not self.exact:
            rng = np.random.default_rng(0 if seed is None else seed)
            self.indices = []
            for size in sizes:
                m = min(size, max(1, int(round(SAMPLE_SIZE * size / total))))
                picked = np.sort(rng.choice(size, m, replace=False)).astype(np.int32)
                self.indices.append(tf.constant(picked))
        self.ones = [tf.ones((1,) + tuple(t.shape)[1:], dtype=t.dtype) for t in clone.inputs]
        self.homogeneous_graph = not _non_homogeneous_ops(clone)
        self.x_scale = 1.0
        self.seed_scale = 1.0
        self.balanced = False
        self.log2_r = None
        self.score_pass = tf.function(self._score_pass, autograph=False)
        self.mask = tf.function(self._mask, autograph=False)

    # The traced functions ---------------------------------------------
    def _score_pass(self, x_scale, seed_scale):
        tf = self.tf
        inputs = [o * tf.cast(x_scale, o.dtype) if o.dtype.is_floating else o for o in self.ones]
        with tf.GradientTape() as tape:
            outputs = self.clone(inputs[0] if len(inputs) == 1 else inputs, training=False)
            total = tf.add_n(
                [tf.reduce_sum(tf.cast(o, self.dtype)) for o in tf.nest.flatten(outputs)]
            )
        grads = tape.gradient(total, self.kernels, output_gradients=seed_scale)
        grads = [
            tf.zeros_like(k) if g is None else g for g, k in zip(grads, self.kernels, strict=True)
        ]
        return total, grads, self._sample(grads)

    def _sample(self, grads):
        """|g * theta| at the sample positions (all positions for small models)."""
        tf = self.tf
        if self.exact:
            return tf.concat(
                [tf.reshape(tf.abs(g * k), [-1]) for g, k in zip(grads, self.kernels, strict=True)],
                0,
            )
        return tf.concat(
            [
                tf.abs(tf.gather(tf.reshape(g, [-1]), i) * tf.gather(tf.reshape(k, [-1]), i))
                for g, k, i in zip(grads, self.kernels, self.indices, strict=True)
            ],
            0,
        )

    def _mask(self, grads, threshold):
        tf = self.tf
        zero = tf.constant(0, self.dtype)
        for kernel, g in zip(self.kernels, grads, strict=True):
            kernel.assign(tf.where(tf.abs(g * kernel) >= threshold, kernel, zero))
        return tf.constant(True)

    def _run(self, x_scale, seed_scale):
        """One pass; returns R (of the scaled input) and the sampled scores.

        The pass's gradients are kept in ``self.grads`` (for the flow check,
        the mask and the final scores).
        """
        tf = self.tf
        self.grads = None  # free the previous pass's gradients first
        total, self.grads, sample = self.score_pass(
            tf.constant(x_scale, self.dtype), tf.constant(seed_scale, self.dtype)
        )
        return float(total.numpy()), sample.numpy()

    def _layer_scores(self, group, factor=1.0):
        """Flat float64 ``|g * theta| * factor`` of one layer (last pass)."""
        arrays = []
        with np.errstate(over="ignore", invalid="ignore"):  # checked by callers
            for i in group:
                flat = self.grads[i].numpy().astype(np.float64).reshape(-1)
                flat *= self.kernels[i].numpy().reshape(-1)
                np.abs(flat, out=flat)
                if factor != 1.0:
                    flat *= factor
                arrays.append(flat)
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    # Calibration ------------------------------------------------------
    def calibrate(self):
        """Choose the scaling; returns its name, or None to retry in float64.

        float32: R at a small input ``2**-100`` gives the gain ``G = R(1)``;
        R at the all-zeros input must be exactly 0 (no additive terms) and
        ``R(t) / t == G`` must hold at the working scale ``t = G ** -0.5``
        (and at a point ``2**8`` away when the probe is close to it): the
        linearised network is then of degree one in its input and the
        power-of-two rescaling is exact. Otherwise the copy runs unscaled
        when ``R(1)`` is small enough, else None asks for a float64 restart.
        The gradients of the last pass show whether every scored layer gets
        some flow.
        """
        if self.dtype != self.tf.float32:
            r1, sample1 = self._run(1.0, 1.0)
            self._check_pass(r1, sample1, "even in float64")
            self.log2_r = math.log2(r1)
            return "none (float64)"
        gain = None
        if self.homogeneous_graph and all(o.dtype.is_floating for o in self.ones):
            for probe in (2.0**-100, 1.0, 2.0**64):
                r, _ = self._run(probe, 1.0)
                if not math.isfinite(r):
                    break  # G > 2**228: beyond the balanced float32 range
                if r > 0:
                    gain = r / probe
                    break
            else:  # R == 0 at every probe
                self._raise_no_flow()
        if gain is not None and math.log2(gain) <= _LOG2_MAX_GAIN_FLOAT32:
            log2_gain = math.log2(gain)
            scale = 2.0 ** (-round(log2_gain / 2))
            tests = [scale]
            if abs(math.log2(scale / probe)) < 8:
                up = log2_gain + math.log2(scale) + 8 <= 120
                tests.insert(0, scale * (2.0**8 if up else 2.0**-8))
            ok = self._run(0.0, 1.0)[0] == 0.0
            for test in tests if ok else ():
                r, sample = self._run(test, scale)
                ok = math.isfinite(r) and abs(r / test - gain) <= 1e-5 * gain
                if not ok:
                    break
            if ok and self._finite(sample):
                self._check_flow()
                self.balanced = True
                self.x_scale = self.seed_scale = scale
                self.log2_r = math.log2(r / scale)
                return "balanced float32 (input and seed scaled by powers of two)"
        r1, sample1 = self._run(1.0, 1.0)
        if (
            math.isfinite(r1)
            and 0 < r1 <= 2.0**_LOG2_MAX_UNSCALED_FLOAT32
            and self._finite(sample1)
        ):
            self._check_flow()
            self.log2_r = math.log2(r1)
            return "none (float32)"
        if r1 == 0.0 and gain is None:
            self._raise_no_flow()
        return None

    def _check_pass(self, r, sample, where):
        """Raise ScoreError for a zero or non-finite pass (float64 only)."""
        if math.isfinite(r) and r > 0 and self._finite(sample):
            self._check_flow()
            return
        if r == 0.0:
            self._raise_no_flow()
        self._raise_nonfinite(r, where)

    def _raise_no_flow(self):
        self._check_flow()
        raise ScoreError(
            "SynFlow's path sum R is zero: no path from the input reaches the "
            "output. Expected a connected network with nonzero kernels. "
            "Received: R=0.0"
        )

    @staticmethod
    def _finite(sample):
        return bool(np.all(np.isfinite(sample)))

    def _check_flow(self):
        """Raise if a scored layer gets no flow (from the last pass's gradients)."""
        tf = self.tf
        for key, group in zip(self.keys, self.groups, strict=True):
            weights = any(bool(tf.reduce_any(self.kernels[i] != 0).numpy()) for i in group)
            flow = any(
                bool(tf.reduce_any((self.grads[i] != 0) & (self.kernels[i] != 0)).numpy())
                for i in group
            )
            if weights and not flow:
                raise ScoreError(
                    f"SynFlow scores of layer '{key}' are all zero before any "
                    "pruning: no path from the input through this layer reaches "
                    "the output of the linearised network. Expected every "
                    "scored layer to feed the model output. Received: layer "
                    f"'{key}' with nonzero kernel weights and zero gradients"
                )

    def _raise_nonfinite(self, r, where):
        """Raise ScoreError naming the first layer with NaN/inf scores in the last pass."""
        gates = _non_homogeneous_ops(self.clone)
        why = (
            "the linearised network multiplies activations together (e.g. "
            f"{', '.join(repr(g) for g in gates[:3])}), so its path sum grows "
            "like a power of itself; SynFlow is not usable on such gated "
            "networks here, use another method"
            if gates
            else "the linearised network's path sum overflows; reduce the "
            "depth or the scale of the initial weights"
        )
        for key, group in zip(self.keys, self.groups, strict=True):
            bad = int(np.sum(~np.isfinite(self._layer_scores(group))))
            if bad:
                raise ScoreError(
                    f"SynFlow scores of layer '{key}' are NaN or infinite {where} "
                    f"(dtype {self.dtype.name}, R={r!r}): {why}. Expected "
                    f"finite scores. Received: {bad} non-finite scores in "
                    f"layer '{key}'"
                )
        raise ScoreError(
            f"SynFlow's path sum R is not a positive finite number {where} "
            f"(dtype {self.dtype.name}); every path was pruned or the sum "
            f"overflowed. Expected 0 < R < inf. Received: R={r!r}"
        )

    # Rounds -----------------------------------------------------------
    def prune_round(self, density):
        """Score with the current masks, then keep the top ``density``.

        The threshold is the exact quantile of the sampled scores (the
        ``keep``-th largest); every kernel weight scoring below it is zeroed.
        """
        r, sample = self._run(self.x_scale, self.seed_scale)
        self._check_round(r, sample, density)
        keep = min(sample.size, max(1, int(round(density * sample.size))))
        threshold = kth_largest([sample], keep)
        self.mask(self.grads, self.tf.constant(threshold, self.dtype))
        self.grads = None
        self.density = density
        self.log2_r = math.log2(r / self.x_scale)
        if self.balanced:  # re-centre the scales on the new (smaller) R
            self.x_scale = self.seed_scale = 2.0 ** (-round(self.log2_r / 2))

    def _check_round(self, r, sample, density):
        """R of a round must be positive and finite (else restart or raise).

        Also checks that the previous round's masks hold: pruned weights
        score exactly 0, so the non-zero fraction of the sample may not
        exceed the previous density (plus sampling error).
        """
        kept = np.count_nonzero(sample) / max(1, sample.size)
        if kept > self.density + 0.02:
            raise ScoreError(
                "SynFlow's masks do not follow the schedule (internal error). "
                f"Expected at most {self.density:.4f} of the sampled weights to "
                f"score above zero. Received: {kept:.4f}"
            )
        if math.isfinite(r) and r > 0 and self._finite(sample):
            return
        if r == 0.0:
            raise ScoreError(
                "SynFlow pruned every path from the input to the output (layer "
                "collapse) "
                + (f"while keeping {density:.4g} of the weights" if density else "")
                + ": the schedule is too steep. Expected R > 0 in every round; "
                "use more `rounds` or a higher `target_density`. Received: R=0.0"
            )
        if self.dtype == self.tf.float32:
            raise _NeedFloat64()
        self._raise_nonfinite(r, "after pruning")

    def final_scores(self):
        """Scores at the current masks: dict key -> float64 (unscaled) array."""
        r, sample = self._run(self.x_scale, self.seed_scale)
        self._check_round(r, sample, None)
        self.log2_r = math.log2(r / self.x_scale)
        # Undo the power-of-two scaling (exact): true SynFlow scores.
        unscale = 1.0 / (self.x_scale * self.seed_scale)
        per_layer = {}
        for key, group in zip(self.keys, self.groups, strict=True):
            flat = self._layer_scores(group, unscale)
            if not np.all(np.isfinite(flat)):
                self._raise_nonfinite(r, "in the last round")
            per_layer[key] = flat
        if not any(value.any() for value in per_layer.values()):
            raise ScoreError(
                "SynFlow scores are all zero: no path from the input reaches the "
                "output. Expected a connected network with nonzero kernels. "
                f"Received: R={r!r}"
            )
        return per_layer
