"""benchmarks/prune_trained.py: resume keys, dense metadata, the PreCrop match, one tiny run."""

import json
import subprocess
import sys
from pathlib import Path

import builders
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "prune_trained.py"


def _script():
    return builders.benchmark_script("prune_trained")


def _row(**changes):
    row = dict(
        dense_file="resnet20_dense_cpu20_seed0.keras", dense_sha256="ab", seed=0, budget="macs",
        target=0.5, importance="l1", widths_from="synexp", finetune_epochs=5,
        finetune_config={"epochs": 5, "lr": 0.01, "seed": 0}, train_size=45000, val_images=5000,
        model="resnet20", dense_train_size=45000, dense_epochs=20, total_epochs=25,
        dense_val_accuracy=0.9, pruned_val_accuracy=0.5, finetuned_val_accuracy=0.85,
        macs_ratio=0.5, params_ratio=0.5, int8=None,
    )
    row.update(changes)
    return row


def test_row_key_separates_runs_that_differ():
    m = _script()
    key = m.row_key(_row())
    assert m.row_key(_row(target=0.5)) == key
    for change in (dict(target=0.2), dict(importance="taylor"), dict(widths_from="importance"),
                   dict(finetune_epochs=0, finetune_config=None), dict(seed=1),
                   dict(dense_sha256="cd"), dict(val_images=500),
                   dict(finetune_config={"epochs": 5, "lr": 0.02, "seed": 0}), dict(steps=2)):
        assert m.row_key(_row(**change)) != key, change
    assert m.row_key(_row(steps=1)) == key  # rows from before --steps are one-shot


def test_steps_need_one_fine_tune_epoch_each():
    m = _script()
    with pytest.raises(SystemExit):
        m.parse_args(["--steps", "3", "--finetune-epochs", "2"])
    with pytest.raises(SystemExit):
        m.parse_args(["--steps", "0"])
    assert m.parse_args(["--steps", "2", "--finetune-epochs", "2"]).steps == 2


def test_dense_info_reads_the_manifest_then_the_name(tmp_path):
    m = _script()
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [dict(
        file="resnet20_dense_cpu20_seed1.keras", model="resnet20", epochs=20, train_size=45000,
        recipe="cpu", val_accuracy=0.88, sha256="x",
    )]}))
    info = m.dense_info(str(tmp_path / "resnet20_dense_cpu20_seed1.keras"))
    assert (info["epochs"], info["train_size"], info["recorded_val_accuracy"]) == (20, 45000, 0.88)
    assert m.dense_info(str(tmp_path / "resnet20_dense_cpu15_seed0.keras"))["epochs"] == 15
    assert m.dense_info(str(tmp_path / "model.keras"), dense_epochs=7)["epochs"] == 7
    with pytest.raises(SystemExit):
        m.dense_info(str(tmp_path / "model.keras"))


def test_markdown_matches_precrop_at_the_same_total_epochs():
    m = _script()
    precrop = [
        dict(model="resnet20", variant="precrop_synexp", budget="macs", compress=2.0, seed=0,
             epochs=25, train_size=45000, recipe="cpu", val_accuracy=0.811),
        dict(model="resnet20", variant="precrop_synexp", budget="macs", compress=5.0, seed=0,
             epochs=20, train_size=45000, recipe="cpu", val_accuracy=0.752),
        dict(model="resnet20", variant="uniform_width", budget="macs", compress=5.0, seed=0,
             epochs=25, train_size=45000, recipe="cpu", val_accuracy=0.7),
    ]
    text = m.markdown([_row(), _row(target=0.2)], precrop)
    assert "| 81.1 |" in text  # 50%: the 25-epoch PreCrop run
    assert "(75.2 at 20 ep)" in text  # 20%: only a 20-epoch run, marked
    assert "--epochs 25 --train-size 45000 --variants precrop_synexp --budgets macs " \
        "--compress 5 --seeds 0" in text
    assert "--compress 2 " not in text
    iterative = m.markdown([_row(), _row(steps=2)], precrop)
    assert "| l1 | synexp |" in iterative and "| l1, 2 steps | synexp |" in iterative
    assert iterative.count("| 81.1 (1) |") == 2  # both rows compare with the same PreCrop run


def _tiny_dense(tmp_path, width):
    """A seeded, untrained ResNet-20 saved as a 1-epoch 'dense' model, and the rows path."""
    import keras

    import tf_precrop

    keras.utils.set_random_seed(0)
    dense = tmp_path / "resnet20_dense_cpu1_seed0.keras"
    tf_precrop.models.resnet20(normalize=True, width=width).save(dense)
    return dense, tmp_path / "rows.json"


@pytest.mark.slow
def test_one_tiny_run_writes_a_row_and_resumes(tmp_path):
    dense, out = _tiny_dense(tmp_path, width=0.25)
    cmd = [sys.executable, str(SCRIPT), "--dense", str(dense), "--seeds", "0", "--targets", "0.5",
           "--importance", "taylor", "--finetune-epochs", "1", "--finetune-batch-size", "100",
           "--data", "sample", "--val-size", "100", "--train-size", "400", "--taylor-samples", "64",
           "--int8-samples", "20", "--calibration-samples", "32", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["runs"]
    assert row["dense_epochs"] == 1 and row["total_epochs"] == 2
    assert abs(row["macs_ratio"] - 0.5) < 0.05
    assert row["finetuned_val_accuracy"] is not None
    # An untrained model's int8 error can exceed the export's tolerance: then the
    # row records the error and the sweep goes on.
    assert row["int8"].get("samples") == 20 or "error" in row["int8"], row["int8"]
    assert "| taylor | synexp |" in proc.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0 and len(json.loads(out.read_text())["runs"]) == 1


@pytest.mark.slow
def test_iterative_run_reaches_the_target_in_steps(tmp_path):
    dense, out = _tiny_dense(tmp_path, width=0.5)
    cmd = [sys.executable, str(SCRIPT), "--dense", str(dense), "--seeds", "0", "--targets", "0.25",
           "--importance", "l1", "--finetune-epochs", "3", "--steps", "2", "--finetune-batch-size", "100",
           "--data", "sample", "--val-size", "100", "--train-size", "200", "--no-int8",
           "--recalibration-samples", "100", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["runs"]
    first, second = row["steps_history"]
    assert first["macs_ratio"] == pytest.approx(0.5, abs=0.03)  # sqrt(0.25) of the dense MACs
    assert second["macs_ratio"] == pytest.approx(0.25, abs=0.03)
    assert row["macs_ratio"] == second["macs_ratio"]
    assert [first["finetune_epochs"], second["finetune_epochs"]] == [1, 2]
    assert row["total_epochs"] == 4 and row["steps"] == 2
    assert "| l1, 2 steps | synexp |" in proc.stdout
