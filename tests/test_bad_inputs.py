"""The bad-input catalogue: every wrong argument fails with a clear, typed error.

Each case asserts the exception type (``TypeError``/``ValueError`` or a
``tf_precrop.errors`` class), that the message names the offending
layer/argument and what was received, and that the model passed in is bitwise
untouched afterwards (weights and config). Also: shared layers (what the graph
ties and what it leaves alone), atomic ``.tflite`` writes, and determinism of
plans (same inputs and seed → identical plan JSON).
"""

import os

import builders
import keras
import numpy as np
import pytest
from strategies import snapshot

import tf_precrop
from tf_precrop import errors
from tf_precrop.export import tflite as tflite_module

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:keras"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),
]


def fails_untouched(model, exc, fn, *needles):
    """Runs ``fn()``, expects ``exc`` with every needle in its message, model untouched."""
    before = snapshot(model) if isinstance(model, keras.Model) else None
    with pytest.raises(exc) as info:
        fn()
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in message: {message}"
    if before is not None:
        assert snapshot(model) == before, "the model changed during a failing call"
    return info.value


@pytest.fixture(scope="module")
def chain():
    return builders.chain()


@pytest.fixture(scope="module")
def labelled(chain):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 8, 8, 3)).astype("float32")
    y = np.arange(8) % 10
    return x, y


def plan(model, target=0.5, **kw):
    kw.setdefault("verbose", 0)
    return tf_precrop.plan(model, target, **kw)


# --------------------------------------------------------------- not a model
class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="my_subclassed")
        self.conv = keras.layers.Conv2D(4, 3)
        self.head = keras.layers.Dense(2)

    def call(self, x):
        return self.head(keras.ops.mean(self.conv(x), axis=(1, 2)))


def test_subclassed_model_is_refused_naming_its_class():
    model = _Subclassed()
    model(np.zeros((1, 8, 8, 3), "float32"))
    err = fails_untouched(
        model, errors.UnsupportedModelError, lambda: plan(model), "_Subclassed", "subclassed",
        "Received: type(model)=",
    )
    assert isinstance(err, TypeError)
    fails_untouched(model, errors.UnsupportedModelError, lambda: tf_precrop.crop(model, 0.5))
    fails_untouched(model, errors.UnsupportedModelError, lambda: tf_precrop.profile(model))


@pytest.mark.parametrize(
    "obj, type_name",
    [
        (np.zeros((2, 8, 8, 3), "float32"), "ndarray"),
        (keras.layers.Dense(3), "Dense"),
        (None, "NoneType"),
        ("resnet20", "str"),
    ],
    ids=["numpy", "layer", "None", "str"],
)
@pytest.mark.parametrize("entry", ["plan", "channel_groups", "profile", "rebuild"])
def test_not_a_model_is_a_type_error_naming_what_was_received(obj, type_name, entry):
    calls = {
        "plan": lambda: plan(obj),
        "channel_groups": lambda: tf_precrop.channel_groups(obj),
        "profile": lambda: tf_precrop.profile(obj),
        "rebuild": lambda: tf_precrop.rebuild(obj, 0.5),
    }
    err = fails_untouched(None, errors.UnsupportedModelError, calls[entry], type_name)
    assert isinstance(err, TypeError)
    assert "model" in str(err).lower() and "Received" in str(err)


def test_unbuilt_sequential_is_refused_naming_the_model():
    model = keras.Sequential(
        [keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)],
        name="unbuilt_seq",
    )
    fails_untouched(
        model, errors.UnsupportedModelError, lambda: plan(model), "unbuilt_seq",
        "model.built=False", "keras.Input",
    )


def test_lambda_with_channel_dependent_output_is_refused_naming_it():
    model = builders.lambda_halves()
    err = fails_untouched(
        model, errors.UnsupportedLayerError, lambda: plan(model), "first_half", "[8]", "[4]",
        "register_rule",
    )
    assert isinstance(err, ValueError)


class _Mystery(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def _custom_model():
    x = keras.Input((8, 8, 3), name="image")
    y = keras.layers.Conv2D(8, 3, padding="same", name="c")(x)
    y = _Mystery(name="mystery")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, keras.layers.Dense(2, name="out")(y), name="custom")


def test_unknown_custom_layer_is_refused_with_the_register_rule_fix():
    model = _custom_model()
    fails_untouched(
        model, errors.UnsupportedLayerError, lambda: plan(model), "'mystery'", "_Mystery",
        "tf_precrop.register_rule('_Mystery', 'passthrough')",
    )
    tf_precrop.register_rule("_Mystery", "passthrough")
    try:
        small = plan(model, 0.5).apply()
        assert small.output_shape == model.output_shape
    finally:
        tf_precrop.unregister_rule("_Mystery")
    fails_untouched(model, errors.UnsupportedLayerError, lambda: plan(model), "_Mystery")


def test_register_rule_rejects_unknown_kinds():
    fails_untouched(None, ValueError, lambda: tf_precrop.register_rule("X", "sideways"), "rule='sideways'")
    fails_untouched(None, TypeError, lambda: tf_precrop.register_rule("X", 3), "rule=3")


# ------------------------------------------------------------- shared layers
def test_shared_conv_ties_its_two_inputs_and_its_two_outputs():
    """``shared`` (a Conv2D with weights) is called on ``a`` and ``b``: one width each side."""
    model = builders.shared_layer()
    graph = tf_precrop.channel_groups(model)
    (group,) = [g for g in graph.groups if "a" in g.producers]
    assert set(group.producers) >= {"a", "b"}
    p = plan(model, 0.5)
    small = p.apply()
    layers = {layer.name: layer for layer in small.layers}
    assert layers["a"].filters == layers["b"].filters == p.widths[group.key] < 8
    assert small.get_layer("cat").output.shape[-1] == 2 * layers["shared"].filters
    assert small.count_params() == p.params[1]
    # The two producers cannot be given different widths: they are one group.
    other = "a" if group.key != "a" else "b"
    fails_untouched(
        model, errors.WidthError, lambda: tf_precrop.rebuild(model, {other: 4}), repr(other),
    )


def test_shared_weightless_layer_may_run_at_two_widths():
    """A shared ReLU on 8 and 12 channels ties nothing: each side keeps its own group."""
    x = keras.Input((8, 8, 3), name="image")
    a = keras.layers.Conv2D(8, 1, name="a")(x)
    b = keras.layers.Conv2D(12, 1, name="b")(x)
    relu = keras.layers.ReLU(name="shared_relu")
    y = keras.layers.Concatenate(name="cat")([relu(a), relu(b)])
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    model = keras.Model(x, keras.layers.Dense(2, name="out")(y))
    widths = tf_precrop.channel_groups(model).widths()
    assert widths["a"] == 8 and widths["b"] == 12
    small = tf_precrop.rebuild(model, {"a": 3, "b": 5})
    assert small.get_layer("cat").output.shape[-1] == 8
    assert small.count_params() == tf_precrop.profile(model, {"a": 3, "b": 5}).params


def test_shared_conv_tied_through_unequal_sums_fixes_the_groups():
    """Shared conv on ``a`` (8) and on ``concat(c, d)`` (4 + 4): kept as they are, never wrong."""
    x = keras.Input((8, 8, 3), name="image")
    a = keras.layers.Conv2D(8, 1, name="a")(x)
    c = keras.layers.Conv2D(4, 1, name="c")(x)
    d = keras.layers.Conv2D(4, 1, name="d")(x)
    cd = keras.layers.Concatenate(name="cd")([c, d])
    shared = keras.layers.Conv2D(6, 3, padding="same", name="shared")
    y = keras.layers.Add(name="sum")([shared(a), shared(cd)])
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    model = keras.Model(x, keras.layers.Dense(2, name="out")(y))
    graph = tf_precrop.channel_groups(model)
    for key in ("a", "c", "d"):
        assert graph[key].fixed and "tied through unequal sums at 'shared'" in graph[key].reason
    p = plan(model, 0.7)
    assert p.widths["a"] == 8 and p.widths["c"] == p.widths["d"] == 4
    assert p.apply().count_params() == p.params[1]


# ------------------------------------------------------------------- targets
@pytest.mark.parametrize(
    "target, needle",
    [
        (0, "target=0"),
        (0.0, "target=0.0"),
        (-0.5, "target=-0.5"),
        (float("nan"), "target=nan"),
        (float("inf"), "target=inf"),
        (1.5, "preconfig=True"),
        (1e-6, "below the smallest model"),
        (2, "below the smallest model"),
        ("0.5", "target='0.5'"),
        (None, "target=None"),
        (True, "target=True"),
    ],
)
def test_bad_targets_raise_budget_error(chain, target, needle):
    err = fails_untouched(chain, errors.BudgetError, lambda: plan(chain, target), needle)
    assert isinstance(err, ValueError) and "target" in str(err)


def test_target_above_one_is_fine_with_preconfig(chain):
    p = plan(chain, 1.3, preconfig=True)
    assert p.params[1] > p.params[0]


def test_below_minimum_names_the_smallest_reachable_fraction(chain):
    err = fails_untouched(chain, errors.BudgetError, lambda: plan(chain, 0.001), "Expected a target ≥")
    assert "params" in str(err)
    fails_untouched(chain, errors.BudgetError, lambda: plan(chain, 0.001, budget="macs"), "macs")


def test_unknown_method_budget_option_and_upper(chain):
    err = fails_untouched(chain, ValueError, lambda: plan(chain, method="snipp"), "method='snipp'")
    assert "synexp" in str(err)
    fails_untouched(chain, errors.BudgetError, lambda: plan(chain, budget="flops"), "budget='flops'")
    fails_untouched(chain, TypeError, lambda: plan(chain, round=3), "'round'")
    fails_untouched(chain, errors.BudgetError, lambda: plan(chain, upper=2.0), "upper=2.0", "preconfig=False")


@pytest.mark.parametrize(
    "option, value",
    [
        ("round_to", 0),
        ("round_to", -8),
        ("round_to", 2.5),
        ("tolerance", -1.0),
        ("tolerance", float("nan")),
        ("balance", -5.0),
        ("balance", float("nan")),
        ("seed", "abc"),
    ],
)
def test_bad_plan_options_are_rejected(option, value):
    x = keras.Input((8, 8, 3), name="image")
    y = keras.layers.Conv2D(64, 3, name="c1")(x)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    model = keras.Model(x, keras.layers.Dense(10, name="out")(y))
    fails_untouched(
        model, (TypeError, ValueError),
        lambda: plan(model, 0.5, method="random", **{option: value}), f"{option}=",
    )


@pytest.mark.parametrize(
    "widths, needle",
    [
        ({"c1": -3}, "c1=-3"),
        ({"c1": 2.5}, "c1=2.5"),
        ({"out": 5}, "out=5"),
        ({"nope": 5}, "'nope'"),
        (0, "widths=0"),
        (float("nan"), "widths=nan"),
        ("half", "str"),
    ],
)
def test_bad_rebuild_widths(chain, widths, needle):
    fails_untouched(chain, errors.WidthError, lambda: tf_precrop.rebuild(chain, widths), needle)


@pytest.mark.parametrize("line", builders.LINES)
def test_tf_keras_and_keras3_refusals_match(line):
    k = builders.keras_of(line)
    seq = k.Sequential([k.layers.Conv2D(4, 3), k.layers.GlobalAveragePooling2D(), k.layers.Dense(2)])
    fails_untouched(seq, errors.UnsupportedModelError, lambda: plan(seq), "model.built=False")
    fails_untouched(None, errors.UnsupportedModelError, lambda: plan(k.layers.Dense(2)), "Dense")
    lam = builders.lambda_halves(line)
    fails_untouched(lam, errors.UnsupportedLayerError, lambda: plan(lam), "first_half")
    cf = builders.channels_first(line)
    fails_untouched(cf, errors.UnsupportedLayerError, lambda: plan(cf), "data_format='channels_first'")


# ------------------------------------------------------------- data methods
@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_data_methods_without_data(chain, method):
    err = fails_untouched(chain, errors.ScoreError, lambda: plan(chain, method=method), "data=None")
    assert method.upper() in str(err)


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_data_of_the_wrong_shape(chain, labelled, method):
    _, y = labelled
    for x, needle in (
        (np.zeros((8, 16, 16, 3), "float32"), "x.shape=(8, 16, 16, 3)"),
        (np.zeros((8, 8, 8, 1), "float32"), "x.shape=(8, 8, 8, 1)"),
    ):
        fails_untouched(
            chain, ValueError, lambda x=x: plan(chain, method=method, data=(x, y)), needle,
            "(8, 8, 3)",
        )


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_data_of_the_wrong_dtype(chain, labelled, method):
    x, y = labelled
    fails_untouched(
        chain, ValueError, lambda: plan(chain, method=method, data=(x.astype(str), y)), "x.dtype=<U",
    )
    fails_untouched(
        chain, ValueError, lambda: plan(chain, method=method, data=(x, y + 0.5)), "y.dtype=float64",
    )


@pytest.mark.parametrize("method", ["snip", "grasp"])
@pytest.mark.parametrize("shift, needle", [(10, "labels in [10, 17]"), (-5, "labels in [-5, 2]")])
def test_labels_outside_the_class_range(chain, labelled, method, shift, needle):
    x, y = labelled
    err = fails_untouched(chain, ValueError, lambda: plan(chain, method=method, data=(x, y + shift)), needle)
    assert "[0, 10)" in str(err)


def test_data_forms(chain, labelled):
    x, y = labelled
    fails_untouched(chain, TypeError, lambda: plan(chain, method="snip", data=x), "data of type ndarray")
    fails_untouched(
        chain, ValueError, lambda: plan(chain, method="snip", data=(x, y[:3])), "y shape=(3,)",
    )


# -------------------------------------------------- unusable saliency scores
def _constant_scores(value):
    """A compute_scores stand-in: every score of every layer is ``value``."""
    from tf_precrop.saliency import Scores, prunable_kernels

    def fake(model, method, **kwargs):
        per_layer = {
            key: np.full(sum(int(np.prod(v.shape)) for v in variables), value, dtype=np.float64)
            for key, variables in prunable_kernels(model, kwargs.get("layers"))
        }
        return Scores(method, per_layer, {})

    return fake


@pytest.mark.parametrize("value", [0.0, np.nan, np.inf], ids=["zero", "nan", "inf"])
def test_unusable_scores_raise_score_error(chain, monkeypatch, value):
    import tf_precrop.saliency

    monkeypatch.setattr(tf_precrop.saliency, "compute_scores", _constant_scores(value))
    fails_untouched(chain, errors.ScoreError, lambda: plan(chain, method="magnitude"), "magnitude")


def test_magnitude_on_an_all_zero_model_raises_score_error():
    model = builders.chain()
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    fails_untouched(model, errors.ScoreError, lambda: plan(model, method="magnitude"), "zero")


def test_synflow_and_snip_on_degenerate_weights_raise_score_error(chain, labelled):
    zero = builders.chain()
    zero.set_weights([np.zeros_like(w) for w in zero.get_weights()])
    fails_untouched(zero, errors.ScoreError, lambda: plan(zero, method="synflow", rounds=2), "R=0")
    fails_untouched(zero, errors.ScoreError, lambda: plan(zero, method="snip", data=labelled), "all zero")
    nan = builders.chain()
    nan.set_weights([np.full_like(w, np.nan) for w in nan.get_weights()])
    fails_untouched(nan, errors.ScoreError, lambda: plan(nan, method="synflow", rounds=2), "'c1'")
    fails_untouched(nan, errors.ScoreError, lambda: plan(nan, method="snip", data=labelled), "'c1'")


# -------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def small_model():
    return builders.chain()


def test_unknown_quantize_mode(small_model, tmp_path):
    path = tmp_path / "m.tflite"
    fails_untouched(
        small_model, ValueError, lambda: tf_precrop.export_tflite(small_model, path, quantize="int4"),
        "quantize='int4'",
    )
    assert not path.exists()


def test_int8_without_representative_data(small_model, tmp_path):
    fails_untouched(
        small_model, ValueError,
        lambda: tf_precrop.export_tflite(small_model, tmp_path / "m.tflite", quantize="int8"),
        "representative_data=None",
    )


def test_representative_data_of_the_wrong_shape(small_model, tmp_path):
    fails_untouched(
        small_model, ValueError,
        lambda: tf_precrop.export_tflite(
            small_model, tmp_path / "m.tflite", quantize="int8",
            representative_data=np.zeros((4, 16, 16, 3), "float32"),
        ),
        "representative_data", "shape=(4, 16, 16, 3)",
    )
    assert not (tmp_path / "m.tflite").exists()


def test_benchmark_and_verify_of_missing_or_corrupt_files(small_model, tmp_path):
    fails_untouched(None, FileNotFoundError, lambda: tf_precrop.benchmark_tflite(tmp_path / "no.tflite"), "no.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"junk" * 16)
    fails_untouched(None, errors.ExportError, lambda: tf_precrop.benchmark_tflite(bad), "bad.tflite", "corrupt")
    fails_untouched(small_model, errors.ExportError, lambda: tf_precrop.verify_tflite(bad, small_model), "bad.tflite")


def test_export_of_a_non_model(tmp_path):
    fails_untouched(
        None, errors.UnsupportedModelError,
        lambda: tf_precrop.export_tflite(np.zeros(3), tmp_path / "m.tflite"), "ndarray",
    )


def test_unwritable_output_paths(small_model, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for path, needle in (
        (tmp_path / "missing" / "m.tflite", "missing"),
        (blocker / "m.tflite", "a_file"),
        (tmp_path, "The destination is a folder"),
    ):
        err = fails_untouched(
            small_model, errors.ExportError, lambda p=path: tf_precrop.export_tflite(small_model, p), needle,
        )
        assert "Received" in str(err)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder(small_model, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        fails_untouched(
            small_model, errors.ExportError,
            lambda: tf_precrop.export_tflite(small_model, folder / "m.tflite"), "writable",
        )
    finally:
        folder.chmod(0o700)


@pytest.mark.slow
def test_failed_export_leaves_the_existing_file_untouched(small_model, tmp_path, monkeypatch):
    path = tmp_path / "m.tflite"
    good = tf_precrop.export_tflite(small_model, path)
    content = path.read_bytes()
    other = builders.residual()

    # 1. The conversion succeeds but verification fails.
    monkeypatch.setitem(tflite_module.TOLERANCES, None, -1.0)
    fails_untouched(
        other, errors.ExportError, lambda: tf_precrop.export_tflite(other, path),
        "left as it was", str(path),
    )
    assert path.read_bytes() == content
    monkeypatch.undo()

    # 2. The conversion itself fails.
    def broken(*args, **kwargs):
        raise errors.ExportError("conversion exploded")

    monkeypatch.setattr(tflite_module, "_convert", broken)
    fails_untouched(other, errors.ExportError, lambda: tf_precrop.export_tflite(other, path), "exploded")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"], "temporary files left behind"
    assert os.path.getsize(path) == good.size_bytes


# -------------------------------------------------------------- determinism
@pytest.mark.parametrize(
    "method, kwargs",
    [
        ("synexp", {}),
        ("random", {}),
        ("synflow", {"rounds": 3}),
        ("snip", {}),
        ("magnitude", {}),
        ("uniform_width", {}),
    ],
)
def test_same_inputs_and_seed_give_identical_plan_json(method, kwargs, labelled):
    model = builders.residual()
    data = labelled if method == "snip" else None
    before = snapshot(model)
    texts = [
        plan(model, 0.4, method=method, seed=7, data=data, budget=budget, **kwargs).to_json()
        for budget in ("params", "params", "macs", "macs")
    ]
    assert texts[0] == texts[1] and texts[2] == texts[3]
    assert snapshot(model) == before
    # A JSON round trip gives the same plan, which builds the same widths.
    loaded = tf_precrop.Plan.from_json(texts[0])
    assert loaded.to_json() == texts[0]
    assert loaded.apply(model).count_params() == loaded.params[1]


def test_random_plans_depend_on_the_seed():
    """Another seed draws other scores, so other target densities (widths may coincide)."""
    model = builders.densenet_like()

    def targets(seed):
        return [layer.target_density for layer in plan(model, 0.4, method="random", seed=seed).layers]

    assert targets(1) == targets(1)
    assert targets(1) != targets(2)


def test_plan_for_another_model_is_refused(chain):
    p = plan(chain, 0.5)
    other = builders.residual()
    fails_untouched(other, ValueError, lambda: p.apply(other), "'chain'", "'residual'")
    loaded = tf_precrop.Plan.from_json(p.to_json())
    fails_untouched(chain, ValueError, lambda: loaded.apply(), "model=None")
