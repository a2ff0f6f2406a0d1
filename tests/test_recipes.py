"""Smoke tests of the recipe scripts under benchmarks/ (tiny settings)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_imagenet_recipe_runs_one_epoch_on_fake_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "imagenet_train.py"), "--fake-data",
         "--image-size", "64", "--classes", "10", "--batch-size", "8", "--epochs", "1",
         "--target", "0.5", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "val accuracy" in proc.stdout and "replicas 1" in proc.stdout
