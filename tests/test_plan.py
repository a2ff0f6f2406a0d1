"""plan() / crop(): budgets, methods, PreConfig, JSON, determinism and errors."""

import json
import os
import platform

import numpy as np
import pytest

import tf_precrop
from tf_precrop.errors import BudgetError
from tf_precrop.plan import METHODS

DATA_METHODS = ("snip", "grasp")


def _data(model, n=16, seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape[1:])
    x = rng.uniform(0, 255, (n, *shape)).astype("float32")
    y = rng.integers(0, model.output_shape[-1], n)
    return x, y


def _plan(model, target, budget, method, **kw):
    kw.setdefault("verbose", 0)
    if method == "synflow":
        kw.setdefault("rounds", 5)
    data = _data(model) if method in DATA_METHODS else None
    return tf_precrop.plan(model, target, budget=budget, method=method, data=data, seed=0, **kw)


def _check(model, plan):
    """The plan meets its budget and the built model agrees with it exactly."""
    before, after = plan.params if plan.budget == "params" else plan.macs
    if plan.within_tolerance:
        assert abs(after - plan.budget_value) <= 0.01 * plan.budget_value
    small = plan.apply()
    assert small.input_shape == model.input_shape
    assert small.output_shape == model.output_shape
    prof = tf_precrop.profile(small)
    assert prof.params == small.count_params() == plan.params[1]
    assert prof.macs == plan.macs[1]
    x = np.zeros((1, *model.input_shape[1:]), "float32")
    assert np.all(np.isfinite(np.asarray(small(x))))
    return small


@pytest.fixture(scope="module")
def resnet20():
    return tf_precrop.models.resnet20()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", ["params", "macs"])
def test_every_method_meets_a_30_percent_budget_on_resnet20(resnet20, method, budget):
    plan = _plan(resnet20, 0.3, budget, method)
    assert plan.within_tolerance
    _check(resnet20, plan)


@pytest.mark.slow
@pytest.mark.parametrize("target", [0.5, 0.2, 0.1])
@pytest.mark.parametrize("budget", ["params", "macs"])
@pytest.mark.parametrize(
    "name", ["resnet20", "resnet56", "mobilenet_v2_cifar", "shufflenet_v2", "MobileNetV2", "ResNet50"]
)
def test_targets_on_bundled_and_application_models(name, budget, target):
    import keras

    if name == "shufflenet_v2":
        model = tf_precrop.models.shufflenet_v2(input_shape=(32, 32, 3), classes=10, stem="cifar")
    elif name[0].isupper():
        model = getattr(keras.applications, name)(weights=None, input_shape=(64, 64, 3), classes=10)
    else:
        model = tf_precrop.models.get_model(name)
    methods = METHODS if name in ("resnet20", "mobilenet_v2_cifar") else ("synexp", "synflow", "uniform_width")
    for method in methods:
        plan = _plan(model, target, budget, method)
        assert plan.within_tolerance, (method, plan.achieved)
        _check(model, plan)


def test_target_can_be_an_absolute_count(resnet20):
    plan = _plan(resnet20, 100_000, "params", "synexp")
    assert abs(plan.params[1] - 100_000) <= 1_000


def test_preconfig_widens_some_groups_and_narrows_others_within_budget(resnet20):
    plan = _plan(resnet20, 1.0, "params", "synexp", preconfig=True)
    assert plan.params[1] <= 1.01 * plan.params[0]
    grew = [k for k, w in plan.widths.items() if w > plan.original_widths[k]]
    shrank = [k for k, w in plan.widths.items() if w < plan.original_widths[k]]
    assert grew and shrank
    _check(resnet20, plan)


def test_same_seed_gives_identical_plan_json(resnet20):
    for method in ("random", "synflow", "synexp"):
        a = _plan(resnet20, 0.25, "macs", method).to_json()
        b = _plan(resnet20, 0.25, "macs", method).to_json()
        assert a == b


def test_plan_json_round_trip_rebuilds_the_same_model(resnet20, tmp_path):
    plan = _plan(resnet20, 0.4, "params", "synexp")
    path = tmp_path / "plan.json"
    plan.to_json(path)
    data = json.loads(path.read_text())
    assert data["widths"] == plan.widths and data["method"] == "synexp"
    loaded = tf_precrop.Plan.from_json(str(path))
    assert loaded == plan
    with pytest.raises(ValueError, match="holds no model"):
        loaded.apply()
    small = loaded.apply(resnet20)
    assert small.count_params() == plan.params[1]


def test_plan_for_another_architecture_is_refused(resnet20):
    plan = _plan(resnet20, 0.4, "params", "uniform_width")
    other = tf_precrop.models.resnet32()
    with pytest.raises(ValueError, match="does not fit"):
        plan.apply(other)


def test_summary_names_layers_and_totals(resnet20):
    text = _plan(resnet20, 0.3, "params", "synexp").summary()
    assert "stage3_block3_conv2" in text and "total" in text and "→" in text


@pytest.fixture(scope="module")
def latency_plan(resnet20):
    """A budget="latency" plan of resnet20 on a hand-built table (nothing timed)."""
    import builders

    table = builders.fake_latency_table(resnet20)
    return tf_precrop.plan(resnet20, 0.5, budget="latency", latency=table, verbose=0)


def _png_height(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[20:24], "big")


def test_summary_shows_predicted_ms_only_for_a_latency_plan(resnet20, latency_plan):
    text = latency_plan.summary()
    l0, l1 = latency_plan.latency_ms
    assert "predicted ms" in text and f"{l0:.3f} → {l1:.3f} ({l1 / l0:.1%})" in text
    assert f"achieved {l1:.3f} ms" in text and "per-model constant" in text
    first = latency_plan.layers[0]
    assert f"{first.latency_ms_before:.3f} → {first.latency_ms_after:.3f}" in text
    truncated = latency_plan.summary(max_rows=3)
    assert "more layers" in truncated and "predicted ms" in truncated
    params = _plan(resnet20, 0.5, "params", "synexp")
    assert params.latency_ms is None
    assert "predicted ms" not in params.summary() and " ms" not in params.summary()


def test_report_json_and_figure_hold_the_predicted_latency(resnet20, latency_plan, tmp_path):
    from tf_precrop.report import write_report

    txt, js, png = write_report(latency_plan, tmp_path / "lat")
    data = json.loads(open(js, encoding="utf-8").read())
    l0, l1 = latency_plan.latency_ms
    assert data["latency_ms"]["before"] == l0 and data["latency_ms"]["after"] == l1
    assert data["latency_ms"]["fraction"] == pytest.approx(l1 / l0)
    assert (data["latency_ms"]["precision"], data["latency_ms"]["num_threads"]) == ("fp32", 2)
    assert data["plan"]["latency_ms"] == [l0, l1]
    assert "predicted ms" in open(txt, encoding="utf-8").read()
    _, params_js, params_png = write_report(_plan(resnet20, 0.5, "params", "synexp"), tmp_path / "p")
    assert "latency_ms" not in json.loads(open(params_js, encoding="utf-8").read())
    assert _png_height(png) > _png_height(params_png)  # the third (latency) panel


def test_environment_reports_installed_versions():
    from importlib import metadata

    import keras
    import tensorflow as tf

    from tf_precrop.report import environment

    env = environment()
    assert env["tf_precrop"] == tf_precrop.__version__
    assert env["tensorflow"] == tf.__version__ and env["keras"] == keras.__version__
    assert env["numpy"] == metadata.version("numpy")
    assert env["cpus"] == os.cpu_count() and env["python"] == platform.python_version()
    json.dumps(env)  # plain JSON for benchmark reports


def test_crop_never_modifies_the_input_model(resnet20):
    weights = [w.copy() for w in resnet20.get_weights()]
    config = resnet20.get_config()
    tf_precrop.crop(resnet20, 0.3, method="synflow", rounds=3, verbose=0)
    with pytest.raises(BudgetError):
        tf_precrop.crop(resnet20, 1e-9)
    assert resnet20.get_config() == config
    for a, b in zip(weights, resnet20.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_crop_works_on_tf_keras_models():
    model = tf_precrop.models.resnet20(line="tf_keras")
    plan = _plan(model, 0.3, "macs", "synexp")
    small = _check(model, plan)
    assert type(small).__module__.startswith("tf_keras")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(target=0.0), BudgetError, "positive"),
        (dict(target=-0.5), BudgetError, "positive"),
        (dict(target=float("nan")), BudgetError, "finite"),
        (dict(target=1.5), BudgetError, "preconfig=True"),
        (dict(target=1e-6), BudgetError, "smallest model"),
        (dict(target=0.5, method="obd"), ValueError, "Unknown method"),
        (dict(target=0.5, budget="flops"), BudgetError, "Unknown budget kind"),
        (dict(target="half"), BudgetError, "number"),
        (dict(target=0.5, method="snip"), ValueError, "data"),
        (dict(target=0.5, method="grasp"), ValueError, "data"),
        (dict(target=0.5, colour="red"), TypeError, "unknown options"),
    ],
)
def test_bad_arguments_raise_clear_errors(resnet20, kwargs, error, match):
    target = kwargs.pop("target")
    with pytest.raises(error, match=match):
        tf_precrop.plan(resnet20, target, verbose=0, **kwargs)
