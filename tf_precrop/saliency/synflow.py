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

import time

from tf_precrop.backend import line_of
from tf_precrop.saliency.base import (
    Scores,
    check_graph_model,
    model_and_view,
    prunable_kernels,
    spatial_axes,
)
from tf_precrop.saliency.linearize import linearised_clone
from tf_precrop.saliency.synflow_engine import SAMPLE_SIZE, _Engine, _NeedFloat64

#: Default cap, in pixels, on each spatial side of the SynFlow input.
MAX_SIDE = 96
#: Bound on the per-layer density difference between SynFlow at ``MAX_SIDE``
#: and at 224 px (measured at most 0.024 on ResNet50 and MobileNetV2 over
#: repeated runs; see the module docstring).
RESOLUTION_TOLERANCE = 0.03



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
    model, view = model_and_view(model)
    line = line_of(model)
    rounds = _check_rounds(rounds)
    check_graph_model(model)
    if target_density is None:
        rounds = 1
    selected = prunable_kernels(view, layers)
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


def _prepare(model, keys, shape, full_shape, dtype, seed, info):
    clone, shape, note = linearised_clone(model, shape, full_shape, dtype)
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


__all__ = ["MAX_SIDE", "RESOLUTION_TOLERANCE", "SAMPLE_SIZE", "synflow_scores"]
