"""``tf-precrop prune`` at parity with ``crop``: latency budget, TFLite export, BN re-estimation, report.

The command runs in-process through ``tf_precrop.cli.main`` on a ResNet-20 of
16x16 inputs saved as a ``.keras`` file. The latency budget reads a hand-built
table (``builders.fake_latency_table``), so nothing is timed.
"""

import hashlib
import json

import builders
import keras
import numpy as np
import pytest

import tf_precrop
from tf_precrop.cli import main

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:keras"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),
]

SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``{"model", "table", "samples"}``: resnet20 .keras, its fake fp32/2-thread table, 40 inputs."""
    folder = tmp_path_factory.mktemp("prune_cli")
    model = tf_precrop.models.resnet20(input_shape=SHAPE)
    paths = {
        "model": folder / "resnet20.keras",
        "table": folder / "resnet20_t2_fp32.json",
        "samples": folder / "samples.npy",
    }
    model.save(paths["model"])
    builders.fake_latency_table(model).save(paths["table"])
    rng = np.random.default_rng(0)
    np.save(paths["samples"], rng.uniform(0, 1, size=(40, *SHAPE)).astype("float32"))
    return paths


def _run(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``tf-precrop *argv``; usage errors exit too."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tf-precrop: error: "), lines
    assert "Traceback" not in err
    return lines[0]


def _report(out):
    return json.loads(out.with_name(out.stem + "_report.json").read_text())


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------- latency budget
@pytest.mark.parametrize("target", ["0.5", "2ms"])
def test_latency_budget_prunes_to_the_predicted_target(
    target, files, tmp_path, capsys, monkeypatch
):
    from tf_precrop.latency import LatencyTable, latency_for

    monkeypatch.setenv("TF_PRECROP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "small.keras"
    before = _digest(files["model"])
    code, stdout, err = _run(
        capsys,
        "prune",
        files["model"],
        "--budget",
        "latency",
        "--target",
        target,
        "--latency-table",
        files["table"],
        "--out",
        out,
    )
    assert code == 0, err
    assert _digest(files["model"]) == before  # the input file is only read
    assert not (tmp_path / "cache").exists()  # the table was used: nothing timed here
    assert "fp32, 2 threads, table: " in err

    # The prediction, recomputed from the table and the saved model's widths.
    original = keras.saving.load_model(files["model"])
    graph = tf_precrop.channel_groups(original)
    cost = latency_for(graph, LatencyTable.load(files["table"]), num_threads=2, precision="fp32")
    widths = tf_precrop.channel_groups(keras.saving.load_model(out)).widths()
    dense, pruned = cost.dense_ms, cost.total([widths[g.key] for g in graph.groups])
    # The solver's band is ±2% of the target, edges included (1e-9: rounding).
    goal = 0.5 * dense if target == "0.5" else 2.0
    assert abs(pruned - goal) <= 0.02 * goal + 1e-9, (dense, pruned, goal)

    report = _report(out)
    assert report["latency_ms"] == pytest.approx({"before": dense, "after": pruned})
    assert report["settings"]["budget"] == "latency"
    assert report["settings"]["target"] == (0.5 if target == "0.5" else "2ms")
    assert report["settings"]["latency"] == {
        "num_threads": 2,
        "precision": "fp32",
        "table": str(files["table"]),
    }
    assert f"predicted LiteRT latency {dense:.3f} -> {pruned:.3f} ms" in stdout


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--target", "3ms"], ["--target 3ms", "--budget latency", "budget='params'"]),
        (["--target", "3ms", "--budget", "macs"], ["--budget latency", "budget='macs'"]),
        (["--target", "0.5", "--threads", "4"], ["--threads", "--budget latency"]),
        (["--target", "0.5", "--latency-table", "t.json"], ["--latency-table", "--budget latency"]),
        (["--widths", "0.5", "--budget", "latency"], ["--budget", "--widths", "--target"]),
        (["--plan", "p.json", "--precision", "int8"], ["--precision", "--plan"]),
    ],
    ids=["ms-target", "ms-target-macs", "threads", "table", "widths-budget", "plan-precision"],
)
def test_budget_options_without_their_budget_are_usage_errors(
    args, needles, files, tmp_path, capsys
):
    out = tmp_path / "small.keras"
    code, _, err = _run(capsys, "prune", files["model"], *args, "--out", out)
    assert code == 2
    line = _one_line_error(err)
    for needle in needles:
        assert needle in line, (needle, line)
    assert "prune --help" in line
    assert not out.exists()


# --------------------------------------------------------------- TFLite export
def test_int8_export_is_calibrated_verified_and_reported(files, tmp_path, capsys):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "small.keras"
    code, stdout, err = _run(
        capsys,
        "prune",
        files["model"],
        "--target",
        "0.5",
        "--budget",
        "macs",
        "--quantize",
        "int8",
        "--calibration-data",
        files["samples"],
        "--out",
        out,
    )
    assert code == 0, err
    tflite = tmp_path / "small.tflite"
    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in dtypes, dtypes
    # 40 samples: 10 held back for verification (a quarter), 30 calibrate.
    assert f"wrote {tflite} (" in stdout
    assert f"verified on 10 held-back samples of {files['samples']}: max abs error" in stdout
    assert "relative error" in stdout
    assert "calibrating on 30 samples" in err

    saved = keras.saving.load_model(out)
    original = keras.saving.load_model(files["model"])
    report = _report(out)
    assert report["params"] == {
        "before": tf_precrop.profile(original).params,
        "after": tf_precrop.profile(saved).params,
    }
    assert report["macs"]["after"] == tf_precrop.profile(saved).macs
    assert report["macs"]["after"] / report["macs"]["before"] == pytest.approx(0.5, abs=0.01)
    export = report["export"]
    assert export["path"] == str(tflite) and export["quantize"] == "int8"
    assert export["size_bytes"] == tflite.stat().st_size
    assert export["num_samples"] == 10
    for key in ("max_abs_error", "relative_error", "top1_agreement"):
        assert isinstance(export[key], float), (key, export[key])
    assert report["settings"]["importance"] == "l1" and report["settings"]["recalibration"] is None


def test_int8_without_calibration_data_is_a_usage_error(files, tmp_path, capsys):
    out = tmp_path / "small.keras"
    code, _, err = _run(
        capsys, "prune", files["model"], "--target", "0.5", "--quantize", "int8", "--out", out
    )
    assert code == 2
    line = _one_line_error(err)
    assert "--calibration-data PATH" in line and "Received: calibration_data=None" in line
    assert not out.exists()


def test_calibration_data_without_an_export_is_a_usage_error(files, tmp_path, capsys):
    code, _, err = _run(
        capsys,
        "prune",
        files["model"],
        "--widths",
        "0.5",
        "--calibration-data",
        files["samples"],
        "--out",
        tmp_path / "small.keras",
    )
    assert code == 2
    assert "add --tflite or --quantize" in _one_line_error(err)


# ------------------------------------------------- BatchNormalization statistics
def _moving_stats(model):
    return [
        w.numpy()
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in (layer.moving_mean, layer.moving_variance)
    ]


def test_recalibration_re_estimates_the_saved_models_statistics(files, tmp_path, capsys):
    x = np.load(files["samples"])[:16]  # one batch: fewer samples than the batch size (128)
    np.save(tmp_path / "batch.npy", x)
    plain, recalibrated = tmp_path / "plain.keras", tmp_path / "recal.keras"
    code, _, err = _run(capsys, "prune", files["model"], "--widths", "0.5", "--out", plain)
    assert code == 0, err
    code, stdout, err = _run(
        capsys,
        "prune",
        files["model"],
        "--widths",
        "0.5",
        "--out",
        recalibrated,
        "--recalibrate-data",
        tmp_path / "batch.npy",
        "--recalibrate-samples",
        "16",
    )
    assert code == 0, err
    message = (
        f"re-estimated BatchNormalization statistics on 16 samples of {tmp_path / 'batch.npy'}"
    )
    assert message in stdout and "re-estimating BatchNormalization statistics" in err

    a, b = keras.saving.load_model(plain), keras.saving.load_model(recalibrated)
    stats_a, stats_b = _moving_stats(a), _moving_stats(b)
    # Every BatchNormalization layer (resnet20: 21) has new moving means and variances.
    assert (
        len(stats_a) == len(stats_b) == len(_moving_stats(keras.saving.load_model(files["model"])))
    )
    assert len(stats_a) == 2 * 21
    assert all(not np.allclose(u, v) for u, v in zip(stats_a, stats_b, strict=True))
    # Re-estimated on exactly this batch, the moving statistics are its batch
    # statistics: inference on it computes what training mode does.
    inference = b(x, training=False).numpy()
    training = b(x, training=True).numpy()
    scale = float(np.abs(training).max())
    np.testing.assert_allclose(inference, training, rtol=1e-3, atol=1e-3 * scale)
    # Without the re-estimation the fresh statistics (0, 1) do not.
    assert not np.allclose(a(x, training=False), a(x, training=True), rtol=1e-3)
    assert _report(recalibrated)["settings"]["recalibration"] == {
        "data": str(tmp_path / "batch.npy"),
        "samples": 16,
    }
    assert _report(plain)["settings"]["recalibration"] is None


def test_recalibration_of_a_model_without_batchnorm_is_one_line(files, tmp_path, capsys):
    inputs = keras.Input(SHAPE)
    y = keras.layers.Conv2D(16, 3, name="c")(inputs)
    y = keras.layers.GlobalAveragePooling2D()(y)
    keras.Model(inputs, keras.layers.Dense(4, name="out")(y), name="nobn").save(
        tmp_path / "nobn.keras"
    )
    out = tmp_path / "small.keras"
    code, _, err = _run(
        capsys,
        "--quiet",
        "prune",
        tmp_path / "nobn.keras",
        "--widths",
        '{"c": 8}',
        "--out",
        out,
        "--recalibrate-data",
        files["samples"],
    )
    assert code == 2
    line = _one_line_error(err)
    assert "--recalibrate-data" in line and "no trainable BatchNormalization" in line
    assert not out.exists()


def test_missing_recalibration_data_is_named_before_any_work(files, tmp_path, capsys):
    code, _, err = _run(
        capsys,
        "--quiet",
        "prune",
        files["model"],
        "--widths",
        "0.5",
        "--recalibrate-data",
        tmp_path / "nope.npy",
        "--out",
        tmp_path / "small.keras",
    )
    assert code == 2
    line = _one_line_error(err)
    assert "--recalibrate-data" in line and "nope.npy not found" in line


# --------------------------------------------------------------------- report
def test_report_group_widths_match_the_saved_model(files, tmp_path, capsys):
    out = tmp_path / "small.keras"
    code, stdout, err = _run(
        capsys, "prune", files["model"], "--target", "0.4", "--importance", "l2", "--out", out
    )
    assert code == 0, err
    assert err.startswith(f"[1/2] loading {files['model']}")
    report = _report(out)
    loaded = keras.saving.load_model(out)
    original = keras.saving.load_model(files["model"])
    after = {str(k): w for k, w in tf_precrop.channel_groups(loaded).widths().items()}
    before = {str(k): w for k, w in tf_precrop.channel_groups(original).widths().items()}
    assert {k: g["after"] for k, g in report["groups"].items()} == after
    assert {k: g["before"] for k, g in report["groups"].items()} == before
    settings = report["settings"]
    assert (settings["budget"], settings["target"], settings["importance"]) == ("params", 0.4, "l2")
    assert settings["widths_from"] == "synexp" and settings["widths"] is None
    assert report["params"]["after"] == loaded.count_params()
    # The printed table lists exactly the groups whose width changed.
    changed = [k for k in after if after[k] != before[k]]
    assert changed and f"{len(changed)} of {len(before)} channel groups changed width" in stdout
    for key in changed:
        assert f"{key} " in stdout and f"{before[key]} " in stdout
    unchanged = [k for k in after if after[k] == before[k] and k != "image"]
    assert all(f"{k} " not in stdout for k in unchanged)


def test_quiet_prints_no_table_or_progress(files, tmp_path, capsys):
    out = tmp_path / "small.keras"
    code, stdout, err = _run(
        capsys, "--quiet", "prune", files["model"], "--widths", "0.5", "--out", out
    )
    assert code == 0, err
    assert err == "" and "channel groups changed width" not in stdout
    assert f"wrote {out}" in stdout and f"wrote {tmp_path / 'small_report.json'}" in stdout
    report = _report(out)
    assert report["settings"]["widths"] == 0.5 and report["settings"]["budget"] is None


def test_help_lists_the_new_options(capsys):
    code, stdout, _ = _run(capsys, "prune", "--help")
    assert code == 0
    for option in (
        "--budget",
        "latency",
        "3.5ms",
        "--threads",
        "--precision",
        "--latency-table",
        "--tflite",
        "--quantize",
        "--calibration-data",
        "--calibration-samples",
        "--verify-samples",
        "--recalibrate-data",
        "--recalibrate-samples",
    ):
        assert option in stdout, option
