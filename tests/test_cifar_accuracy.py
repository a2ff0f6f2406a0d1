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


def test_the_shufflenet_names_build_the_cifar_network_at_their_width():
    script = builders.benchmark_script("cifar_accuracy")
    half = script.build_base("shufflenet_v2_x0_5")
    full = script.build_base("shufflenet_v2")
    for model in (half, full):
        assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
        # The CIFAR stem keeps 32x32 until stage 2 halves it.
        assert model.get_layer("stage2_block1_concat").output.shape[1:3] == (16, 16)
    # Table 5 of the ShuffleNetV2 paper: stage 2-4 widths 48/96/192 at 0.5x, 116/232/464 at 1x.
    assert [half.get_layer(f"stage{s}_block1_concat").output.shape[-1] for s in (2, 3, 4)] == [48, 96, 192]
    assert [full.get_layer(f"stage{s}_block1_concat").output.shape[-1] for s in (2, 3, 4)] == [116, 232, 464]
    # Any other name is the bundled architecture itself: ResNet-20's 272,474 trainable
    # weights (0.27 M in He et al. 2016; test_models derives the count per layer).
    resnet = script.build_base("resnet20")
    assert sum(int(w.numpy().size) for w in resnet.trainable_weights) == 272_474
