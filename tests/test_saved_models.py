"""The saved models of the accuracy benchmark load and score as recorded.

``benchmarks/results/models/`` holds the trained models behind
``docs/results.md`` (see ``manifest.json`` there): each takes raw float32
images in [0, 255] of shape (N, 32, 32, 3), normalises inside and outputs 10
logits in the alphabetical class order. These tests load every file with
``keras.saving.load_model`` (safe mode on) and re-evaluate it on the fixed
validation split, which must reproduce the accuracy recorded at training time.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "benchmarks" / "results" / "models"
MANIFEST = json.loads((MODELS / "manifest.json").read_text(encoding="utf-8"))
ENTRIES = MANIFEST["models"]
ZIP = ROOT / ".." / "shared" / "data" / "cifar10" / "train-jpg.zip"

pytestmark = pytest.mark.slow


def test_manifest_lists_every_saved_file_with_its_hash():
    files = sorted(p.name for p in MODELS.glob("*.keras"))
    assert files == sorted(e["file"] for e in ENTRIES)
    for e in ENTRIES:
        assert hashlib.sha256((MODELS / e["file"]).read_bytes()).hexdigest() == e["sha256"], e["file"]


def test_plain_import_registers_what_the_models_need():
    # A fresh interpreter: only `import tf_precrop` may register custom objects.
    masked = next(e["file"] for e in ENTRIES if e["variant"] == "synflow_masked")
    code = (
        "import sys, tf_precrop, keras\n"
        f"m = keras.saving.load_model({str(MODELS / masked)!r})\n"
        "print('OK', m.count_params())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout


@pytest.fixture(scope="module")
def validation():
    if not ZIP.is_file():
        pytest.skip(f"local CIFAR-10 copy not found at {ZIP}")
    from tf_precrop import data

    (x, y), _ = data.load_cifar10(str(ZIP), verbose=0)
    _, (x_val, y_val) = data.train_val_split(x, y, val_size=5000, seed=0)
    return x_val.astype("float32"), y_val


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_saved_model_reproduces_its_recorded_accuracy(entry, validation):
    import keras

    import tf_precrop

    x_val, y_val = validation
    model = keras.saving.load_model(MODELS / entry["file"])
    assert tuple(model.input.shape) == (None, 32, 32, 3)
    assert tuple(model.output.shape) == (None, 10)
    assert model.count_params() == entry["params"]
    assert tf_precrop.profile(model).macs == entry["macs"]
    logits = model.predict(x_val, batch_size=500, verbose=0)
    acc = float(np.mean(np.argmax(logits, axis=-1) == y_val))
    assert acc == pytest.approx(entry["val_accuracy"], abs=1e-3), entry["file"]
