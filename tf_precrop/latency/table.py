"""The latency table: measured milliseconds of single-layer TFLite models, as plain JSON.

A :class:`LatencyTable` holds, for one machine, thread count and precision,
the measured time of every (layer signature, widths) point timed so far, and
the measured dense latency of whole models (the per-model constant of
:class:`~tf_precrop.latency.cost.LatencyCost`). It is what gets cached on disk
and what a table measured on a phone or a board is saved as.

File format (``"format": "tf_precrop.latency/1"``)::

    {"format": "tf_precrop.latency/1", "num_threads": 2, "precision": "fp32",
     "machine": {"id": "...", "description": "..."}, "overhead_ms": 0.004,
     "entries": {"conv:{...}": {"16,64": 0.0123, ...}, ...},
     "models": {"<fingerprint>": {"name": "resnet20", "dense_ms": 1.23,
                                  "thin": {"widths": {"stem_conv": 8, ...}, "ms": 0.51}}}}

Example:

>>> table = LatencyTable(num_threads=2, precision="fp32")
>>> table.add("pool:{}", (16,), 0.5)
>>> LatencyTable.from_json(table.to_json()).get("pool:{}", (16,))
0.5
"""

import hashlib
import json
import math
import os
import platform

from tf_precrop._io import write_text
from tf_precrop.errors import LatencyError

TABLE_FORMAT = "tf_precrop.latency/1"
#: The precisions a table can be measured in (the export's quantization).
PRECISIONS = ("fp32", "int8")
#: Interpreter threads of a table measured without an explicit thread count
#: (the default of ``benchmarks/tflite_latency.py`` and ``benchmark_tflite``).
DEFAULT_THREADS = 2


def check_settings(num_threads, precision):
    """Validates a thread count and a precision; returns them."""
    if precision not in PRECISIONS:
        raise LatencyError(
            f"Unknown latency precision. Expected one of {PRECISIONS}. Received: precision={precision!r}"
        )
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise LatencyError(
            f"`num_threads` must be an integer ≥ 1. Received: num_threads={num_threads!r}"
        )
    return num_threads, precision


def machine():
    """``{"id", "description"}`` of this machine: CPU model, cores, LiteRT version.

    The id is a short hash of the description; a cache file is per id.
    """
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # pragma: no cover - metadata missing
        litert = "unknown"
    description = f"{platform.system()} {platform.machine()} | {cpu} | {os.cpu_count()} cpus | ai-edge-litert {litert}"
    return {"id": hashlib.sha256(description.encode()).hexdigest()[:12], "description": description}


def cache_path(num_threads, precision, directory=None):
    """Where this machine's cached table for these settings lives.

    ``directory`` defaults to ``$TF_PRECROP_CACHE`` or ``~/.cache/tf_precrop``.
    """
    directory = directory or os.environ.get("TF_PRECROP_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "tf_precrop"
    )
    return os.path.join(directory, f"latency-{machine()['id']}-t{num_threads}-{precision}.json")


def _point_key(widths):
    return ",".join(str(int(w)) for w in widths)


class LatencyTable:
    """Measured single-layer latencies for one machine, thread count and precision.

    Args:
        num_threads: interpreter threads the points were (or will be) timed with.
        precision: ``"fp32"`` or ``"int8"``.
        machine: ``{"id", "description"}``; defaults to this machine.
        entries: ``{signature: {"c_in,c_out": ms}}``.
        models: ``{fingerprint: {"name", "dense_ms", "thin"}}`` (``thin``: a
            uniformly thinned copy's widths and measured ms, optional).
        path: the file it was loaded from (None if built in memory).
        overhead_ms: the time of ``invoke()`` on a one-element model: what
            every single-layer measurement holds besides its layer (the
            interpreter's fixed cost per call, which a whole model pays once,
            not once per layer). :class:`~tf_precrop.latency.LatencyCost`
            subtracts it from every point. None: not measured yet (0 in use).
    """

    def __init__(self, num_threads=DEFAULT_THREADS, precision="fp32", machine=None, entries=None,
                 models=None, path=None, overhead_ms=None):
        check_settings(num_threads, precision)
        self.num_threads = num_threads
        self.precision = precision
        self.machine = dict(machine) if machine is not None else globals()["machine"]()
        self.entries = {k: dict(v) for k, v in (entries or {}).items()}
        self.models = {k: dict(v) for k, v in (models or {}).items()}
        self.path = path
        if overhead_ms is not None:
            overhead_ms = float(overhead_ms)
            if not math.isfinite(overhead_ms) or overhead_ms < 0:
                raise LatencyError(f"overhead_ms must be finite and ≥ 0. Received: overhead_ms={overhead_ms!r}")
        self.overhead_ms = overhead_ms

    # ----------------------------------------------------------------- points
    def get(self, signature, widths):
        """Measured ms at ``widths`` (a tuple of ints), or None."""
        return self.entries.get(signature, {}).get(_point_key(widths))

    def add(self, signature, widths, ms):
        """Records one measured point (ms must be finite and ≥ 0)."""
        ms = float(ms)
        if not math.isfinite(ms) or ms < 0:
            raise LatencyError(f"A latency must be finite and ≥ 0 ms. Received: {ms!r} at {signature}")
        self.entries.setdefault(signature, {})[_point_key(widths)] = ms

    def missing(self, signature, grids):
        """The grid points (tuples) of ``grids`` (one width list per axis) not measured yet."""
        import itertools

        have = self.entries.get(signature, {})
        return [p for p in itertools.product(*grids) if _point_key(p) not in have]

    def values(self, signature, grids):
        """The measured ms on the full grid, as nested lists (LatencyError if any point is missing)."""
        import numpy as np

        missing = self.missing(signature, grids)
        if missing:
            raise LatencyError(
                f"The latency table has no measurement for {len(missing)} grid point(s) of "
                f"layer signature {signature} (e.g. widths {missing[0]}). Expected a table "
                "measured for this model: build it with "
                "`tf_precrop.latency.measure_table(model, ...)` on the target device. "
                f"Received: table {self.path or '(in memory)'}"
            )
        have = self.entries[signature]
        if len(grids) == 1:
            return np.array([have[_point_key((a,))] for a in grids[0]], dtype=np.float64)
        return np.array([[have[_point_key((a, b))] for b in grids[1]] for a in grids[0]], dtype=np.float64)

    def __len__(self):
        return sum(len(v) for v in self.entries.values())

    # ---------------------------------------------------------------- model constants
    def dense_ms(self, fingerprint):
        """The measured dense latency of the model with this fingerprint, or None."""
        entry = self.models.get(fingerprint)
        return None if entry is None else float(entry["dense_ms"])

    def thin(self, fingerprint):
        """``{"widths": {group: width}, "ms": float}`` of the model's measured thinned copy, or None."""
        entry = self.models.get(fingerprint) or {}
        return entry.get("thin")

    def add_model(self, fingerprint, name, dense_ms, thin=None):
        """Records a model's measured dense latency, and optionally a thinned copy's
        (``{"widths": {group: width}, "ms": float}``: the second calibration point)."""
        entry = {"name": str(name), "dense_ms": float(dense_ms)}
        if thin is not None:
            entry["thin"] = {"widths": {k: int(v) for k, v in thin["widths"].items()}, "ms": float(thin["ms"])}
        self.models[fingerprint] = entry

    # ----------------------------------------------------------------- JSON
    def to_dict(self):
        return {
            "format": TABLE_FORMAT,
            "num_threads": self.num_threads,
            "precision": self.precision,
            "machine": self.machine,
            "entries": self.entries,
            "models": self.models,
            "overhead_ms": self.overhead_ms,
        }

    def to_json(self, path=None):
        """The table as JSON text; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        if path is not None:
            write_text(path, text)
            self.path = os.fspath(path)
        return text

    def save(self, path=None):
        """Writes the table (atomically) to ``path`` or the file it came from."""
        path = path or self.path
        if path is None:
            raise ValueError("This table has no file yet. Expected `save(path)`. Received: path=None")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.to_json(path)
        return path

    @classmethod
    def from_json(cls, text, path=None):
        """A table from :meth:`to_json` text; LatencyError if it is not one."""
        where = path or "(text)"
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LatencyError(
                f"The latency table {where} is not valid JSON ({e}). Expected a file written by "
                "LatencyTable.save; delete it to rebuild the cache."
            ) from e
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise LatencyError(
                f"The file {where} is not a latency table. Expected format={TABLE_FORMAT!r}. "
                f"Received: format={got!r}"
            )
        try:
            entries = data["entries"]
            for sig, points in entries.items():
                for key, ms in points.items():
                    [int(w) for w in key.split(",")]
                    if not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms < 0:
                        raise ValueError(f"bad latency {ms!r} at {sig} [{key}]")
            return cls(
                num_threads=data["num_threads"],
                precision=data["precision"],
                machine=data["machine"],
                entries=entries,
                models=data.get("models", {}),
                path=path,
                overhead_ms=data.get("overhead_ms"),
            )
        except LatencyError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise LatencyError(
                f"The latency table {where} is corrupt ({type(e).__name__}: {e}). Expected the "
                "fields of LatencyTable.to_dict; delete the file to rebuild the cache."
            ) from e

    @classmethod
    def load(cls, path):
        """Loads a table file (LatencyError if missing or corrupt)."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError as e:
            raise LatencyError(
                f"Latency table file not found. Expected a JSON table. Received: path={path!r}"
            ) from e
        return cls.from_json(text, path=path)

    def __repr__(self):
        return (
            f"LatencyTable({len(self)} points, {len(self.entries)} signatures, "
            f"threads={self.num_threads}, {self.precision}, machine={self.machine.get('id')})"
        )
