"""``tf-precrop`` end to end, in a subprocess: crop, profile, bench, latency, help and bad inputs.

Every bad input must exit with status 2 and print exactly one line on stderr,
``tf-precrop: error: ...``, and no traceback. The CLI hides TensorFlow's own
C++ log lines (``I0000 ... cudart_stub.cc ...``, ``WARNING: All log messages
before absl::InitializeLog() ...``) unless ``--verbose`` is given; the quiet
tests check the raw output for them, the others still filter them out
(``err_lines``) so that a regression there fails only the quiet tests.

The subprocesses run this checkout's tf_precrop (``PYTHONPATH``), not whichever
copy is installed, and without ``TF_CPP_MIN_LOG_LEVEL``, as a user's shell.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import zipfile

import builders
import numpy as np
import pytest

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:keras"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),
]

_NOISE = re.compile(
    r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\)"
    r"|INFO: Created TensorFlow Lite)"
)

#: Any sign of TensorFlow's or LiteRT's native logging in the CLI's raw output.
_TF_LOG = re.compile(
    r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuda|cuInit|MLIR|SavedModel|XNNPACK|"
    r"TensorFlow Lite|cpu_feature_guard|rebuild TensorFlow|fully_quantize",
    re.IGNORECASE | re.MULTILINE,
)

REPO = pathlib.Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def cli(*args, cwd, timeout=600, python=(), module="tf_precrop.cli"):
    """Runs ``python -m tf_precrop.cli *args`` in ``cwd``; returns the CompletedProcess."""
    result = subprocess.run(
        [sys.executable, *python, "-m", module, *map(str, args)],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
    )
    result.err_lines = [
        line for line in result.stderr.splitlines() if line.strip() and not _NOISE.match(line)
    ]
    return result


def assert_one_line_error(result, *needles):
    """Exit status 2, stderr is one ``tf-precrop: error:`` line (after TF noise), no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(result.err_lines) == 1, result.err_lines
    (line,) = result.err_lines
    assert line.startswith("tf-precrop: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


# ---------------------------------------------------------------- happy path
@pytest.mark.slow
def test_crop_resnet20_writes_a_loadable_keras_file_a_running_tflite_and_reports(tmp_path):
    out = tmp_path / "out"
    result = cli("crop", "resnet20", "--target", "0.3", "--tflite", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    stem = "resnet20_precrop"
    for suffix in (".keras", ".tflite", "_plan.json", "_report.txt", "_report.json", "_report.png"):
        path = out / f"{stem}{suffix}"
        assert path.is_file() and path.stat().st_size > 0, path
    assert f"wrote {out / stem}.keras" in result.stdout
    assert "verified" in result.stdout

    import keras

    import tf_precrop
    import tf_precrop.layers  # noqa: F401 - registers ChannelSplit/ChannelShuffle

    model = keras.saving.load_model(out / f"{stem}.keras")
    plan = json.loads((out / f"{stem}_plan.json").read_text())
    assert model.count_params() == plan["params"][1]
    assert abs(plan["params"][1] / plan["params"][0] - 0.3) <= 0.01 * 0.3
    assert tf_precrop.profile(model).params == model.count_params()
    report = json.loads((out / f"{stem}_report.json").read_text())
    assert report
    assert (out / f"{stem}_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / f"{stem}_report.txt").read_text().strip()

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out / f"{stem}.tflite"))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    (outp,) = interpreter.get_output_details()
    x = np.random.default_rng(0).standard_normal(inp["shape"]).astype(np.float32)
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(outp["index"])
    assert y.shape == (1, 10) and np.isfinite(y).all()
    np.testing.assert_allclose(y, np.asarray(model(x, training=False)), atol=1e-4, rtol=1e-4)

    bench = cli("bench", out / f"{stem}.tflite", "--runs", "5", "--warmup", "1", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert "median" in bench.stdout and "ms" in bench.stdout
    assert not [line for line in bench.err_lines if "error" in line.lower()]


@pytest.mark.slow
def test_profile_resnet20(tmp_path):
    result = cli("profile", "resnet20", "--json", tmp_path / "p.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "total" in result.stdout and "274,042" in result.stdout
    assert json.loads((tmp_path / "p.json").read_text())["params"] == 274042


# ---------------------------------------------------------------------- help
HELP = {
    None: ["crop", "profile", "bench", "train", "latency", "--quiet", "--debug", "--verbose"],
    "crop": ["--target", "--budget", "--method", "--rounds", "--tflite", "--quantize", "--out",
             "--input-shape", "--unsafe-load", "--preconfig", "--bench", "--calibration-data",
             "--calibration-samples", "--verify-samples", "--threads", "--precision",
             "--latency-table", "3.5ms"],
    "profile": ["--input-shape", "--classes", "--line", "--json", "--unsafe-load"],
    "bench": ["--threads", "--runs", "--warmup", "--no-xnnpack"],
    "train": ["--target", "--epochs", "--batch-size", "--limit", "--data", "--out", "--budget",
              "--threads", "--precision", "--latency-table"],
    "latency": ["--out", "--threads", "--precision", "--table", "--preconfig", "--input-shape",
                "--classes", "--line", "--unsafe-load"],
}


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: c or "top")
def test_help_exits_0_and_lists_the_options(command, tmp_path):
    args = ([command] if command else []) + ["--help"]
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tf-precrop")
    for option in HELP[command]:
        assert option in result.stdout, option


@pytest.mark.skipif(shutil.which("tf-precrop") is None, reason="console script not installed")
def test_console_script_help(tmp_path):
    result = subprocess.run(
        ["tf-precrop", "crop", "--help"], capture_output=True, text=True, cwd=tmp_path, env=_env()
    )
    assert result.returncode == 0 and "--target" in result.stdout
    assert not _TF_LOG.search(result.stderr + result.stdout), result.stderr


@pytest.mark.parametrize(
    "args", [["--help"], ["crop", "--help"], ["latency", "--help"]], ids=["top", "crop", "latency"]
)
def test_help_does_not_import_tensorflow_or_log(args, tmp_path):
    result = cli(*args, cwd=tmp_path, python=("-X", "importtime"))
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "tf_precrop.cli" in imported
    assert not {"tensorflow", "keras", "tf_keras"} & imported
    logs = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert not logs and not _TF_LOG.search(result.stdout), logs


# ---------------------------------------------------------------- bad inputs
@pytest.mark.slow
def test_unknown_model_name(tmp_path):
    result = cli("--quiet", "crop", "resnet21", "--target", "0.5", "--out", tmp_path / "o", cwd=tmp_path)
    assert_one_line_error(result, "unknown model 'resnet21'", "resnet20")


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape",
    [
        "224,x",
        "224,abc",
        "224,,3",
    ],
)
def test_bad_input_shape_string(shape, tmp_path):
    result = cli(
        "--quiet", "crop", "resnet20", "--input-shape", shape, "--target", "0.5",
        "--out", tmp_path / "o", cwd=tmp_path,
    )
    assert_one_line_error(result, repr(shape))


@pytest.mark.parametrize(
    "args",
    [["--target", "abc"], [], ["--target", "0.5", "--budget", "flops"]],
    ids=["bad-float", "missing-target", "bad-choice"],
)
def test_argparse_errors_are_one_line(args, tmp_path):
    result = cli("crop", "resnet20", *args, cwd=tmp_path)
    assert_one_line_error(result)


@pytest.mark.slow
def test_unwritable_output_dir(tmp_path):
    (tmp_path / "afile").write_text("a file, not a folder")
    result = cli(
        "--quiet", "crop", "resnet20", "--target", "0.5", "--out", tmp_path / "afile" / "sub",
        cwd=tmp_path,
    )
    assert_one_line_error(result, "afile")


@pytest.mark.slow
def test_corrupted_keras_file(tmp_path):
    (tmp_path / "bad.keras").write_bytes(b"this is not a zip file")
    result = cli("--quiet", "profile", "bad.keras", cwd=tmp_path)
    assert_one_line_error(result, "could not load bad.keras", "not a .keras archive")
    (tmp_path / "bad.h5").write_bytes(b"this is not HDF5")
    result = cli("--quiet", "profile", "bad.h5", cwd=tmp_path)
    assert_one_line_error(result, "could not load bad.h5", "not an HDF5 file")
    # A .keras zip without the model config.
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("metadata.json", "{}")
    result = cli("--quiet", "crop", "empty.keras", "--target", "0.5", "--out", tmp_path / "o", cwd=tmp_path)
    assert_one_line_error(result, "could not load empty.keras", "no config.json")


@pytest.mark.slow
def test_corrupted_tflite_given_to_bench(tmp_path):
    (tmp_path / "bad.tflite").write_bytes(b"\x00" * 64 + b"not a flatbuffer")
    result = cli("bench", "bad.tflite", cwd=tmp_path)
    assert_one_line_error(result, "bad.tflite", "corrupt")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needle",
    [
        (["bench", "missing.tflite"], "missing.tflite"),
        (["--quiet", "crop", "missing.keras", "--target", "0.5"], "missing.keras"),
        (["--quiet", "profile", "missing.keras"], "missing.keras"),
    ],
    ids=["bench", "crop", "profile"],
)
def test_missing_file(args, needle, tmp_path):
    assert_one_line_error(cli(*args, cwd=tmp_path), needle, "not found" if "bench" not in args else "no such file")


@pytest.mark.slow
def test_target_zero(tmp_path):
    result = cli("--quiet", "crop", "resnet20", "--target", "0", "--out", tmp_path / "o", cwd=tmp_path)
    assert_one_line_error(result, "target=0.0")


@pytest.mark.slow
def test_unknown_method(tmp_path):
    result = cli(
        "--quiet", "crop", "resnet20", "--target", "0.5", "--method", "snipp", "--out", tmp_path / "o",
        cwd=tmp_path,
    )
    assert_one_line_error(result, "method='snipp'", "synexp")


@pytest.mark.slow
def test_errors_are_one_line_without_quiet_too(tmp_path):
    """Progress lines go to stderr first; the error is still one line, the last one."""
    result = cli("crop", "resnet20", "--target", "0", "--out", tmp_path / "o", cwd=tmp_path)
    assert "Traceback" not in result.stderr and result.returncode == 2
    errors = [line for line in result.err_lines if "error" in line]
    assert len(errors) == 1 and errors[0] == result.err_lines[-1]
    assert errors[0].startswith("tf-precrop: error: ")


# ---------------------------------------------------------------- safe load
def _lambda_keras_file(path):
    import keras

    x = keras.Input((8, 8, 3), name="image")
    y = keras.layers.Conv2D(8, 3, padding="same", name="c")(x)
    y = keras.layers.Lambda(lambda t: t * 2.0, name="double")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    keras.Model(x, keras.layers.Dense(2, name="out")(y), name="lambda_model").save(path)
    return path


@pytest.mark.slow
def test_lambda_keras_file_refused_in_safe_mode_and_loaded_with_unsafe_load(tmp_path):
    path = _lambda_keras_file(tmp_path / "lam.keras")
    refused = cli("--quiet", "crop", path.name, "--target", "0.5", "--out", tmp_path / "o", cwd=tmp_path)
    assert_one_line_error(refused, "lam.keras", "Lambda")
    assert not (tmp_path / "o" / "lambda_model_precrop.keras").exists()
    ok = cli(
        "--quiet", "crop", path.name, "--target", "0.5", "--unsafe-load", "--out", tmp_path / "o",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "o" / "lambda_model_precrop.keras").is_file()


@pytest.mark.slow
def test_safe_mode_refusal_names_the_unsafe_load_flag(tmp_path):
    path = _lambda_keras_file(tmp_path / "lam.keras")
    refused = cli("--quiet", "profile", path.name, cwd=tmp_path)
    assert_one_line_error(refused, "--unsafe-load")


# ------------------------------------------------- int8 calibration data, quiet
def _tiny_keras_file(path):
    """A 16x16 RGB classifier that rescales [0, 255] inside, saved as .keras."""
    import keras

    x = keras.Input((16, 16, 3), name="image")
    y = keras.layers.Rescaling(1 / 255.0, name="rescale")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(y)
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c2")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    keras.Model(x, keras.layers.Dense(4, name="out")(y), name="tiny").save(path)
    return path


def _image_folder(folder, count):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"class{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        tf.io.write_file(str(sub / f"{i}.png"), tf.io.encode_png(pixels))
    return folder


@pytest.mark.slow
def test_crop_int8_on_an_image_folder_is_quiet_and_verifies_on_held_back_samples(tmp_path):
    _tiny_keras_file(tmp_path / "tiny.keras")
    _image_folder(tmp_path / "imgs", 40)
    result = cli(
        "crop", "tiny.keras", "--target", "0.5", "--quantize", "int8", "--calibration-data",
        "imgs", "--out", "o", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not _TF_LOG.search(result.stderr), result.stderr
    assert not _TF_LOG.search(result.stdout), result.stdout
    assert "calibrating on 30 samples of imgs, verifying on 10 held-back ones" in result.stderr
    assert "verified on 10 held-back samples of imgs" in result.stdout
    assert (tmp_path / "o" / "tiny_precrop.tflite").is_file()
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.endswith(".tmp")]
    report = json.loads((tmp_path / "o" / "tiny_precrop_report.json").read_text())
    assert report["tflite"]["quantize"] == "int8" and report["tflite"]["num_samples"] == 10


def test_int8_without_calibration_data_stops_before_any_work(tmp_path):
    result = cli("crop", "resnet20", "--target", "0.5", "--quantize", "int8", "--out", "o", cwd=tmp_path)
    line = assert_one_line_error(result, "--calibration-data PATH", "Received: calibration_data=None")
    assert "crop --help" in line
    assert not (tmp_path / "o").exists()


def test_calibration_data_without_tflite_is_a_usage_error(tmp_path):
    result = cli("crop", "resnet20", "--target", "0.5", "--calibration-data", "x.npy", cwd=tmp_path)
    assert_one_line_error(result, "--tflite or --quantize", "calibration_data='x.npy'")


def test_missing_calibration_data_fails_before_loading_the_model(tmp_path):
    result = cli(
        "--quiet", "crop", "resnet20", "--target", "0.5", "--quantize", "int8",
        "--calibration-data", "nope.npy", "--out", "o", cwd=tmp_path,
    )
    assert_one_line_error(result, "calibration data not found: nope.npy", "calibration_data='nope.npy'")


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, needles",
    [
        ("wrong-shape", ["wrong.npy", "expected (N, 16, 16, 3)", "Received: shape=(5, 8, 8, 3)"]),
        ("empty-folder", ["empty has no image file", "Received: images=0"]),
        ("unreadable", ["junk.npy", "not a .npy file", "Received: path='junk.npy'"]),
    ],
)
def test_bad_calibration_data_is_one_line(kind, needles, tmp_path):
    _tiny_keras_file(tmp_path / "tiny.keras")
    np.save(tmp_path / "wrong.npy", np.zeros((5, 8, 8, 3), np.float32))
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    data = {"wrong-shape": "wrong.npy", "empty-folder": "empty", "unreadable": "junk.npy"}[kind]
    result = cli(
        "--quiet", "crop", "tiny.keras", "--target", "0.5", "--quantize", "int8",
        "--calibration-data", data, "--out", "o", cwd=tmp_path,
    )
    assert_one_line_error(result, *needles)
    assert not _TF_LOG.search(result.stderr), result.stderr
    assert not (tmp_path / "o" / "tiny_precrop.keras").exists()  # failed before planning


# ------------------------------------------------------------- latency budget
@pytest.fixture(scope="module")
def resnet20_table(tmp_path_factory):
    """A hand-built fp32, 2-thread latency table for resnet20 (nothing is timed)."""
    from tf_precrop.cli import load_model

    path = tmp_path_factory.mktemp("latency") / "resnet20_t2_fp32.json"
    builders.fake_latency_table(load_model("resnet20")).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("target", ["0.5", "2ms"])
def test_crop_to_a_latency_budget_with_a_table_measured_elsewhere(target, resnet20_table, tmp_path):
    result = cli(
        "crop", "resnet20", "--budget", "latency", "--target", target, "--latency-table",
        resnet20_table, "--out", "o", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Timing" not in result.stdout  # the table was used: nothing measured here
    stem = tmp_path / "o" / "resnet20_precrop"
    plan = json.loads(stem.with_name(stem.name + "_plan.json").read_text())
    before, after = plan["latency_ms"]
    # The solver's band is ±2% of the target, edges included (1e-9: rounding).
    if target == "0.5":
        assert abs(after / before - 0.5) <= 0.02 * 0.5 + 1e-9, (before, after)
    else:
        assert plan["target"] == "2ms" and abs(after - 2.0) <= 0.02 * 2.0 + 1e-9, (before, after)
    settings = plan["settings"]
    assert (settings["num_threads"], settings["precision"]) == (2, "fp32")
    assert settings["latency_table"] == str(resnet20_table)
    assert all(layer["latency_ms_after"] is not None for layer in plan["layers"])
    assert "predicted ms" in result.stdout and f"{before:.3f} → {after:.3f}" in result.stdout
    report = json.loads(stem.with_name(stem.name + "_report.json").read_text())
    assert report["latency_ms"]["before"] == before and report["latency_ms"]["after"] == after
    assert stem.with_suffix(".keras").is_file()
    assert "fp32, 2 threads, table: " in result.stderr


@pytest.mark.parametrize("value", ["3xs", "0ms", "-1ms", "nanms", "ms"])
def test_bad_latency_target_is_a_one_line_usage_error(value, tmp_path):
    # --target=VALUE: argparse reads a bare "-1ms" as an option
    result = cli("crop", "resnet20", "--budget", "latency", f"--target={value}", cwd=tmp_path)
    assert_one_line_error(result, "--target", repr(value))


@pytest.mark.parametrize(
    "args, needles",
    [
        (["crop", "resnet20", "--target", "0.5ms"], ["--budget latency", "target='0.5ms'"]),
        (["train", "resnet20", "--target", "2ms", "--budget", "macs"], ["--budget latency", "budget='macs'"]),
        (["crop", "resnet20", "--target", "0.5", "--latency-table", "t.json"], ["--latency-table", "--budget latency"]),
        (["crop", "resnet20", "--target", "0.5", "--precision", "int8"], ["--precision", "--budget latency"]),
        (["train", "resnet20", "--threads", "4"], ["--threads", "--budget latency"]),
    ],
    ids=["ms-target-crop", "ms-target-train", "table", "precision", "threads-train"],
)
def test_latency_options_need_the_latency_budget(args, needles, tmp_path):
    result = cli(*args, cwd=tmp_path)
    assert_one_line_error(result, *needles)


def test_cli_latency_constants_match_the_library():
    import tf_precrop.cli as cli_module
    import tf_precrop.latency

    assert cli_module.PRECISIONS == tf_precrop.latency.PRECISIONS
    assert cli_module.DEFAULT_THREADS == tf_precrop.latency.DEFAULT_THREADS


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--precision", "int8"], ["measured in fp32 at 2 threads", "int8 (from --precision)", "pass --precision fp32"]),
        (["--threads", "4"], ["at 4 threads", "pass --threads 2"]),
        (
            ["--quantize", "int8", "--calibration-data", "x.npy"],
            ["int8 (from --quantize int8)", "pass --precision fp32"],
        ),
    ],
    ids=["precision", "threads", "quantize-int8"],
)
def test_latency_table_of_other_settings_is_refused_before_loading_the_model(args, needles, tmp_path):
    from tf_precrop.latency import LatencyTable

    LatencyTable(2, "fp32").save(tmp_path / "t.json")
    np.save(tmp_path / "x.npy", np.zeros((4, 32, 32, 3), np.float32))
    result = cli(
        "--quiet", "crop", "resnet20", "--budget", "latency", "--target", "0.5",
        "--latency-table", "t.json", *args, "--out", "o", cwd=tmp_path,
    )
    line = assert_one_line_error(result, "--latency-table t.json", *needles)
    assert "num_threads=" not in line  # the flags, not plan()'s arguments
    assert not (tmp_path / "o" / "resnet20_precrop.keras").exists()


def test_missing_latency_table_is_one_line(tmp_path):
    result = cli(
        "--quiet", "crop", "resnet20", "--budget", "latency", "--target", "0.5",
        "--latency-table", "nope.json", "--out", "o", cwd=tmp_path,
    )
    assert_one_line_error(result, "not found", "nope.json")


@pytest.mark.slow
def test_latency_table_of_another_model_is_one_line(tmp_path):
    from tf_precrop.latency import LatencyTable

    LatencyTable(2, "fp32").save(tmp_path / "empty.json")
    result = cli(
        "--quiet", "crop", "resnet20", "--budget", "latency", "--target", "0.5",
        "--latency-table", "empty.json", "--out", "o", cwd=tmp_path,
    )
    assert_one_line_error(result, "empty.json", "lacks", "resnet20")


def _tiny8_keras_file(path):
    import keras

    x = keras.Input((8, 8, 3), name="image")
    y = keras.layers.Conv2D(8, 3, name="conv")(x)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    keras.Model(x, keras.layers.Dense(4, name="out")(y), name="tiny8").save(path)
    return path


@pytest.mark.slow
def test_latency_verb_measures_a_table_and_extends_it(tmp_path):
    """``python -m tf_precrop latency``: real LiteRT timing of a tiny model, saved atomically."""
    import tf_precrop
    import tf_precrop.latency as lat

    path = _tiny8_keras_file(tmp_path / "tiny8.keras")
    result = cli("latency", path.name, "--out", "tables/t.json", cwd=tmp_path, module="tf_precrop")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not _TF_LOG.search(result.stderr), result.stderr
    table = lat.LatencyTable.load(tmp_path / "tables" / "t.json")
    assert (table.num_threads, table.precision) == (2, "fp32")
    assert f"wrote tables/t.json: {len(table)} points, {len(table.entries)} signatures, 1 model(s)" in result.stdout
    assert not [p for p in (tmp_path / "tables").iterdir() if p.name != "t.json"]  # no temp files
    import keras

    graph = tf_precrop.channel_groups(keras.saving.load_model(path))
    probes = lat.probes_of(graph)
    assert probes and all(not table.missing(p.signature, grids) for p, grids in probes)
    assert table.dense_ms(lat.fingerprint(graph)) > 0
    assert all(ms > 0 for points in table.entries.values() for ms in points.values())

    again = cli(
        "--quiet", "latency", path.name, "--table", "tables/t.json", "--out", "tables/t.json",
        cwd=tmp_path, module="tf_precrop",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 new points" in again.stdout
    assert lat.LatencyTable.load(tmp_path / "tables" / "t.json").entries.keys() == table.entries.keys()
    refused = cli(
        "--quiet", "latency", path.name, "--table", "tables/t.json", "--precision", "int8",
        "--out", "t8.json", cwd=tmp_path,
    )
    assert_one_line_error(refused, "tables/t.json", "fp32", "int8")
    assert not (tmp_path / "t8.json").exists()


@pytest.mark.slow
def test_train_killed_midway_resumes_when_the_same_command_runs_again(tmp_path):
    """A real SIGKILL after the first finished epoch; the rerun carries on from its backup."""
    args = ["train", "resnet20", "--target", "0.5", "--epochs", "4", "--batch-size", "50",
            "--data", "sample", "--out", "run"]
    state = tmp_path / "run" / "backup" / "state.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tf_precrop.cli", *args], cwd=tmp_path, env=_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.exists(), "no epoch finished before the deadline"
    finally:
        proc.kill()
        proc.wait()
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 4

    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resumed_after={done}" in result.stdout
    rows = json.loads((tmp_path / "run" / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert not (tmp_path / "run" / "backup").exists()
