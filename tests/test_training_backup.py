"""train(..., backup_dir=...): an interrupted run resumes to the uninterrupted run's weights."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from tf_precrop.data import cifar10_dataset
from tf_precrop.training import TrainConfig, train
from tf_precrop.training import backup as backup_module
from tf_precrop.training import datasets as datasets_module
from tf_precrop.training.backup import TrainingBackup

# Shuffle, augmentation, momentum, label smoothing, warm-up and cosine decay all
# carry state across epochs, so each must be restored for the weights to agree.
CONFIG = TrainConfig(
    epochs=3, batch_size=32, lr=0.2, schedule="cosine", warmup_epochs=1,
    nesterov=True, label_smoothing=0.1, augment=True, seed=3,
)


class Interrupted(Exception):
    pass


def _data(n=192, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 60, (n, 32, 32, 3)).astype(np.float32)
    x[..., 0] += 20 * y[:, None, None]
    return x.astype(np.uint8), y


def _model(init_seed=0):
    """A small conv net with BatchNormalization (moving statistics are state too)."""
    keras.utils.set_random_seed(init_seed)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h))


def _interrupt_after(monkeypatch, epochs_done, before_state=False):
    """Makes the backup stop the run once ``epochs_done`` epochs are saved.

    ``before_state``: stop after writing that epoch's weights but before its
    ``state.json`` (a kill between the two files).
    """
    save, write_json = TrainingBackup.save, backup_module.write_json
    stopping = {"now": False}

    def write_json_or_stop(path, obj, **kwargs):
        if stopping["now"]:
            raise Interrupted
        write_json(path, obj, **kwargs)

    def save_then_stop(self, model, done, rows):
        stopping["now"] = before_state and done == epochs_done
        save(self, model, done, rows)
        if done == epochs_done:
            raise Interrupted

    monkeypatch.setattr(TrainingBackup, "save", save_then_stop)
    monkeypatch.setattr(backup_module, "write_json", write_json_or_stop)


def _weights(model):
    return [np.asarray(w) for w in model.weights]


def _assert_same_weights(a, b):
    assert len(a) == len(b)
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def uninterrupted():
    x, y = _data()
    result = train(_model(), (x, y), (x[:64], y[:64]), config=CONFIG, verbose=0)
    return result


@pytest.mark.parametrize("stop_after, before_state, resumes_after", [(2, False, 2), (2, True, 1)])
def test_a_resumed_run_reaches_the_uninterrupted_weights(
    tmp_path, monkeypatch, uninterrupted, stop_after, before_state, resumes_after
):
    x, y = _data()
    backup_dir = tmp_path / "backup"
    with monkeypatch.context() as m:
        _interrupt_after(m, stop_after, before_state)
        with pytest.raises(Interrupted):
            train(_model(), (x, y), (x[:64], y[:64]), config=CONFIG, verbose=0,
                  backup_dir=backup_dir)
    state = json.loads((backup_dir / "state.json").read_text())
    assert state["epoch"] == resumes_after
    # The state names its own weights file; a newer one without a state is ignored.
    expected = {f"epoch-{resumes_after:04d}.weights.h5", "state.json"}
    if before_state:
        expected.add(f"epoch-{stop_after:04d}.weights.h5")
    assert set(os.listdir(backup_dir)) == expected

    # A fresh process would build the model from another init; the backup must win.
    resumed = train(_model(init_seed=7), (x, y), (x[:64], y[:64]), config=CONFIG, verbose=0,
                    backup_dir=backup_dir)
    assert resumed.initial_epoch == resumes_after
    steps = len(x) // CONFIG.batch_size
    assert int(resumed.model.optimizer.iterations.numpy()) == CONFIG.epochs * steps
    _assert_same_weights(_weights(resumed.model), _weights(uninterrupted.model))
    for key in ("loss", "accuracy", "val_accuracy", "learning_rate"):
        np.testing.assert_allclose(resumed.history[key], uninterrupted.history[key], rtol=1e-4)
    assert not backup_dir.exists()  # a finished run leaves nothing behind


def test_without_moving_the_data_on_the_weights_differ(tmp_path, monkeypatch, uninterrupted):
    """The control: the comparison above would catch a resume that replays epoch 0's batches."""
    x, y = _data()
    backup_dir = tmp_path / "backup"
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        with pytest.raises(Interrupted):
            train(_model(), (x, y), (x[:64], y[:64]), config=CONFIG, verbose=0,
                  backup_dir=backup_dir)
    stream = datasets_module.cifar10_stream

    def replay_from_step_0(x, y, batch_size, steps, start, **kwargs):
        return stream(x, y, batch_size, steps=steps - start, start=0, **kwargs)

    monkeypatch.setattr(datasets_module, "cifar10_stream", replay_from_step_0)
    replayed = train(_model(), (x, y), (x[:64], y[:64]), config=CONFIG, verbose=0,
                     backup_dir=backup_dir)
    gap = max(float(np.max(np.abs(a - b)))
              for a, b in zip(_weights(replayed.model), _weights(uninterrupted.model), strict=True))
    assert gap > 1e-3


def test_steps_per_epoch_streams_resume_by_skipping_the_finished_steps(tmp_path, monkeypatch):
    x, y = _data(128)
    config = CONFIG.replace(steps_per_epoch=3)

    def dataset():
        return cifar10_dataset(x, y, batch_size=32, seed=5)

    full = train(_model(), dataset(), config=config, verbose=0)
    backup_dir = tmp_path / "backup"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(Interrupted):
            train(_model(), dataset(), config=config, verbose=0, backup_dir=backup_dir)
    resumed = train(_model(), dataset(), config=config, verbose=0, backup_dir=backup_dir)
    assert resumed.initial_epoch == 1
    assert int(resumed.model.optimizer.iterations.numpy()) == 9
    _assert_same_weights(_weights(resumed.model), _weights(full.model))


def test_a_ready_dataset_without_steps_per_epoch_resumes_with_a_warning(tmp_path, monkeypatch):
    x, y = _data(128)
    backup_dir = tmp_path / "backup"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(Interrupted):
            train(_model(), cifar10_dataset(x, y, batch_size=32, seed=5), config=CONFIG,
                  verbose=0, backup_dir=backup_dir)
    with pytest.warns(UserWarning, match="ready tf.data.Dataset.*steps_per_epoch"):
        resumed = train(_model(), cifar10_dataset(x, y, batch_size=32, seed=5), config=CONFIG,
                        verbose=0, backup_dir=backup_dir)
    assert resumed.initial_epoch == 1 and len(resumed.history["loss"]) == 3


def test_an_unseeded_run_keeps_its_stream_seed_in_the_backup(tmp_path, monkeypatch):
    x, y = _data(128)
    config = CONFIG.replace(seed=None)
    backup_dir = tmp_path / "backup"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(Interrupted):
            train(_model(), (x, y), config=config, verbose=0, backup_dir=backup_dir)
    seed = json.loads((backup_dir / "state.json").read_text())["stream_seed"]
    assert isinstance(seed, int)
    used = []
    stream = datasets_module.cifar10_stream

    def recording(*args, **kwargs):
        used.append(kwargs["seed"])
        return stream(*args, **kwargs)

    monkeypatch.setattr(datasets_module, "cifar10_stream", recording)
    train(_model(), (x, y), config=config, verbose=0, backup_dir=backup_dir)
    assert used == [seed]


def test_logs_and_best_checkpoint_cover_every_epoch_after_a_resume(tmp_path, monkeypatch):
    x, y = _data()
    log_dir, backup_dir = tmp_path / "logs", tmp_path / "backup"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(Interrupted):
            train(_model(), (x, y), (x[:64], y[:64]), config=CONFIG, verbose=0,
                  log_dir=log_dir, backup_dir=backup_dir)
    resumed = train(_model(), (x, y), (x[:64], y[:64]), config=CONFIG, verbose=0,
                    log_dir=log_dir, backup_dir=backup_dir)
    rows = json.loads((log_dir / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert [r["val_accuracy"] for r in rows] == pytest.approx(resumed.history["val_accuracy"])
    with open(log_dir / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]
    assert resumed.best_val_accuracy == max(r["val_accuracy"] for r in rows)
    assert (log_dir / "best.keras").exists()
    assert "resumed_after=1" in str(resumed)


@pytest.mark.filterwarnings("ignore:Skipping variable loading")  # Keras, on the wrong model
def test_a_backup_of_another_config_or_model_is_refused(tmp_path, monkeypatch):
    x, y = _data()
    backup_dir = tmp_path / "backup"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(Interrupted):
            train(_model(), (x, y), config=CONFIG, verbose=0, backup_dir=backup_dir)
    with pytest.raises(ValueError, match=r"another TrainConfig.*'lr': 0\.2.*'lr': 0\.1"):
        train(_model(), (x, y), config=CONFIG.replace(lr=0.1), verbose=0, backup_dir=backup_dir)

    wider = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="does not fit this model"):
        train(wider, (x, y), config=CONFIG, verbose=0, backup_dir=backup_dir)
    assert (backup_dir / "state.json").exists()  # a refused backup is left as it was

    # Keras only warns when it skips the optimizer's variables; the step count catches it.
    state = json.loads((backup_dir / "state.json").read_text())
    (backup_dir / "state.json").write_text(json.dumps({**state, "iterations": 5}))
    with pytest.raises(ValueError, match="optimizer state .* was not restored.*Expected 5"):
        train(_model(), (x, y), config=CONFIG, verbose=0, backup_dir=backup_dir)


def test_tf_keras_models_are_refused_with_the_way_out(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    inputs = tf_keras.Input((32, 32, 3))
    h = tf_keras.layers.GlobalAveragePooling2D()(inputs)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10)(h))
    x, y = _data(64)
    with pytest.raises(ValueError, match="Keras 3 model.*BackupAndRestore"):
        train(model, (x, y), config=CONFIG, verbose=0, backup_dir=tmp_path / "b")
