"""``tf-precrop`` end to end, in a subprocess: crop, profile, bench, help and bad inputs.

Every bad input must exit with status 2 and print exactly one line on stderr,
``tf-precrop: error: ...``, and no traceback. TensorFlow's own C++ start-up
log lines (``I0000 ... cudart_stub.cc ...``, ``WARNING: All log messages before
absl::InitializeLog() ...``) go to stderr before tf_precrop runs, whatever
``TF_CPP_MIN_LOG_LEVEL`` says, so they are filtered out before counting lines.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

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


def cli(*args, cwd, timeout=600):
    """Runs ``python -m tf_precrop.cli *args`` in ``cwd``; returns the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, "-m", "tf_precrop.cli", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
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
    None: ["crop", "profile", "bench", "train", "--quiet", "--debug"],
    "crop": ["--target", "--budget", "--method", "--rounds", "--tflite", "--quantize", "--out",
             "--input-shape", "--unsafe-load", "--preconfig", "--bench"],
    "profile": ["--input-shape", "--classes", "--line", "--json", "--unsafe-load"],
    "bench": ["--threads", "--runs", "--warmup", "--no-xnnpack"],
    "train": ["--target", "--epochs", "--batch-size", "--limit", "--data", "--out"],
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
    result = subprocess.run(["tf-precrop", "crop", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and "--target" in result.stdout


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
