"""SynFlow's engine: score passes, thresholds and masks on the linearised copy.

See :mod:`tf_precrop.saliency.synflow` for what is computed and why it is fast
and exact ("Speed", "Numerics").
"""

import math

import numpy as np

from tf_precrop.densities import kth_largest
from tf_precrop.errors import ScoreError
from tf_precrop.saliency.base import iter_layers, layer_kernels, raw_variable
from tf_precrop.saliency.linearize import _non_homogeneous_ops

#: Number of scores sampled to place intermediate thresholds.
SAMPLE_SIZE = 2**16
_LOG2_MAX_GAIN_FLOAT32 = 228  # balanced: activations up to about 2**114 < 2**128
_LOG2_MAX_UNSCALED_FLOAT32 = 90


class _NeedFloat64(Exception):
    """float32 overflowed: the run is restarted on a float64 copy."""


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
