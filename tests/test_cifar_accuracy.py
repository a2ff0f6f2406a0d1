"""benchmarks/cifar_accuracy.py: a run killed midway resumes after its last finished epoch."""

import json
import os

import builders
import pytest

from tf_precrop import training
from tf_precrop.training.backup import TrainingBackup


class Interrupted(Exception):
    pass


def _args(tmp_path, *extra):
    return [
        "--data", "sample", "--train-size", "200", "--val-size", "100", "--epochs", "3",
        "--batch-size", "50", "--model", "resnet20", "--variants", "uniform_width",
        "--budgets", "macs", "--compress", "4", "--seeds", "1",
        "--out", str(tmp_path / "runs.json"), "--save-dir", str(tmp_path / "models"),
        "--backup-dir", str(tmp_path / "backup"), *extra,
    ]


@pytest.mark.slow
def test_a_run_killed_after_an_epoch_resumes_there_and_records_it(tmp_path, monkeypatch):
    script = builders.benchmark_script("cifar_accuracy")
    save = TrainingBackup.save

    def save_then_stop(self, model, done, rows):
        save(self, model, done, rows)
        if done == 2:
            raise Interrupted

    with monkeypatch.context() as m:
        m.setattr(TrainingBackup, "save", save_then_stop)
        with pytest.raises(Interrupted):
            script.main(_args(tmp_path))
    backup = tmp_path / "backup" / "resnet20_uniform_width_macs4x_seed1"
    assert json.loads((backup / "state.json").read_text())["epoch"] == 2
    assert not (tmp_path / "runs.json").exists()  # no row for an unfinished run

    assert script.main(_args(tmp_path)) == 0
    (row,) = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert row["resumed_after_epoch"] == 2 and row["data_order"] == "stream"
    assert os.path.exists(row["saved_model"])
    assert not backup.exists()


@pytest.mark.slow
def test_the_iterator_order_is_the_ready_pipeline_and_keeps_no_backup(tmp_path, monkeypatch):
    script = builders.benchmark_script("cifar_accuracy")
    seen = []
    original = training.train

    def recording(model, train_data, *args, **kwargs):
        seen.append((type(train_data).__name__, kwargs["backup_dir"]))
        return original(model, train_data, *args, **kwargs)

    monkeypatch.setattr(training, "train", recording)  # main() calls training.train
    assert script.main(_args(tmp_path, "--data-order", "iterator", "--epochs", "1")) == 0
    (row,) = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert row["data_order"] == "iterator" and "resumed_after_epoch" not in row
    assert seen[0][1] is None and "Dataset" in seen[0][0]
