"""Tests of tf_precrop.training: the standard CIFAR recipe."""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_precrop.data import cifar10_dataset
from tf_precrop.training import (
    LRSchedule,
    TrainConfig,
    TrainResult,
    evaluate,
    make_lr_schedule,
    train,
)

REPO = Path(__file__).resolve().parents[1]


def _data(n=512, seed=0):
    """Learnable toy images: the class sets the mean brightness of one channel."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 60, (n, 32, 32, 3)).astype(np.float32)
    x[..., 0] += 20 * y[:, None, None]
    return x.astype(np.uint8), y


def _tiny(activation=None, kernel_constraint=None):
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(
        8, 3, strides=2, activation="relu", kernel_constraint=kernel_constraint
    )(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(10, activation=activation)(h)
    return keras.Model(inputs, outputs)


FAST = TrainConfig(epochs=6, batch_size=64, lr=0.4, schedule="cosine", augment=False)


# --------------------------------------------------------------------- config
def test_default_config_is_the_paper_recipe():
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.peak_lr, c.momentum, c.weight_decay) == (
        160,
        128,
        0.1,
        0.9,
        5e-4,
    )
    assert c.schedule == "step" and c.milestone_epochs == (80, 120) and c.gamma == 0.1
    assert (c.warmup_epochs, c.label_smoothing, c.mixed_precision) == (0, 0.0, False)


def test_config_round_trips_through_json_and_is_frozen():
    c = TrainConfig(epochs=30, schedule="cosine", milestones=(0.3, 0.6), seed=None)
    assert TrainConfig.from_dict(json.loads(c.to_json())) == c
    with pytest.raises(AttributeError):
        c.epochs = 3


def test_learning_rate_scales_linearly_with_batch_size():
    assert TrainConfig(batch_size=256).peak_lr == pytest.approx(0.2)
    assert TrainConfig(batch_size=64).peak_lr == pytest.approx(0.05)
    assert TrainConfig(batch_size=256, scale_lr=False).peak_lr == pytest.approx(0.1)


@pytest.mark.parametrize(
    "changes",
    [
        {"schedule": "linear"},
        {"epochs": 0},
        {"milestones": (0.8, 0.4)},
        {"momentum": 1.0},
        {"warmup_epochs": 200},
        {"batch_size": 1.5},
    ],
)
def test_config_rejects_invalid_values(changes):
    with pytest.raises(ValueError, match="Received"):
        TrainConfig(**changes)


# ------------------------------------------------------------------- schedule
def test_step_schedule_gives_the_documented_lr_at_given_steps():
    steps = 351  # 45,000 images / 128
    s = make_lr_schedule(TrainConfig(), steps_per_epoch=steps)
    lr = {
        step: float(s(step))
        for step in (0, 80 * steps - 1, 80 * steps, 120 * steps - 1, 120 * steps, 160 * steps - 1)
    }
    assert lr[0] == pytest.approx(0.1)
    assert lr[80 * steps - 1] == pytest.approx(0.1)
    assert lr[80 * steps] == pytest.approx(0.01)
    assert lr[120 * steps - 1] == pytest.approx(0.01)
    assert lr[120 * steps] == pytest.approx(0.001)
    assert lr[160 * steps - 1] == pytest.approx(0.001)


def test_warmup_rises_linearly_then_cosine_decays_to_zero():
    config = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=2, batch_size=256)
    s = make_lr_schedule(config, steps_per_epoch=10)
    assert float(s(0)) == pytest.approx(0.2 / 20)
    assert float(s(9)) == pytest.approx(0.2 / 2)
    assert float(s(19)) == pytest.approx(0.2)
    assert float(s(20)) == pytest.approx(0.2)
    assert float(s(60)) == pytest.approx(0.1)  # half way through the cosine
    assert float(s(100)) == pytest.approx(0.0, abs=1e-7)


def test_schedule_serializes_with_its_keras_config():
    s = make_lr_schedule(TrainConfig(epochs=20), steps_per_epoch=5)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
    assert isinstance(restored, LRSchedule)
    assert [float(restored(t)) for t in (0, 50, 75)] == pytest.approx([0.1, 0.01, 0.001])


# ------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("run")
    x, y = _data()
    result = train(_tiny(), (x, y), (x[:128], y[:128]), config=FAST, log_dir=log_dir, verbose=0)
    return result, log_dir


def test_a_few_epochs_on_a_tiny_subset_lower_the_loss(trained):
    result, _ = trained
    loss = result.history["loss"]
    assert len(loss) == FAST.epochs
    assert loss[-1] < loss[0] - 0.2
    assert result.best_val_accuracy > 0.15  # chance is 0.1
    assert result.best_val_accuracy >= result.val_accuracy


def test_result_reports_throughput_memory_time_and_learning_rates(trained):
    result, _ = trained
    assert isinstance(result, TrainResult)
    assert result.images_per_sec > 0
    assert result.peak_memory_bytes > 10 * 2**20
    assert result.memory_source in ("process_max_rss", "gpu_peak")
    assert result.seconds > 0 and result.steps_per_epoch == 512 // 64
    expected = make_lr_schedule(FAST, result.steps_per_epoch)
    last_steps = [(e + 1) * result.steps_per_epoch - 1 for e in range(FAST.epochs)]
    assert result.history["learning_rate"] == pytest.approx(
        [float(expected(s)) for s in last_steps]
    )
    json.dumps(result.to_dict())  # JSON-able
    assert "val_accuracy=" in str(result) and "images/s=" in str(result)


def test_checkpoint_csv_and_json_logs_are_written(trained):
    result, log_dir = trained
    assert sorted(os.listdir(log_dir)) == [
        "best.keras",
        "history.csv",
        "history.json",
        "results.json",
    ]
    with open(log_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == FAST.epochs
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    logged = json.loads((log_dir / "history.json").read_text())
    assert TrainConfig.from_dict(logged["config"]) == FAST
    assert [r["loss"] for r in logged["epochs"]] == pytest.approx(result.history["loss"])
    summary = json.loads((log_dir / "results.json").read_text())
    assert summary["val_accuracy"] == pytest.approx(result.val_accuracy)

    best = keras.models.load_model(log_dir / "best.keras")
    assert best.count_params() == result.model.count_params()
    x, y = _data(128, seed=0)
    assert evaluate(best, x, y) == pytest.approx(result.best_val_accuracy)


def test_kernels_get_an_l2_penalty_only_during_training(trained):
    from tf_precrop.backend import line_of
    from tf_precrop.training import _kernel_l2

    model = trained[0].model
    kernels = [w for w in model.trainable_weights if w.name == "kernel"]
    expected = 0.5 * 1e-2 * sum(float(tf.reduce_sum(tf.square(k))) for k in kernels)
    with _kernel_l2(model, line_of(model), 1e-2) as penalized:
        assert {id(k) for k in penalized} == {id(k) for k in kernels}
        assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert model.losses == []
    assert all(w.regularizer is None for w in model.trainable_weights)


def test_evaluate_matches_argmax_of_predictions(trained):
    model = trained[0].model
    x, y = _data(200, seed=1)
    logits = model.predict(x.astype(np.float32), verbose=0)
    assert evaluate(model, x, y, batch_size=64) == pytest.approx(np.mean(logits.argmax(1) == y))
    ds = cifar10_dataset(x, y, batch_size=64, training=False)
    assert evaluate(model, ds) == pytest.approx(np.mean(logits.argmax(1) == y))


class _HalfMask(keras.constraints.Constraint):
    """Zeroes the first half of the output channels, like a masked baseline."""

    def __call__(self, w):
        mask = tf.concat([tf.zeros(w.shape[-1] // 2), tf.ones(w.shape[-1] - w.shape[-1] // 2)], 0)
        return w * tf.cast(mask, w.dtype)


def test_kernel_constraints_masks_survive_training():
    model = _tiny(kernel_constraint=_HalfMask())
    conv = model.layers[2]
    conv.kernel.assign(_HalfMask()(conv.kernel))
    x, y = _data(128)
    train(model, (x, y), config=FAST.replace(epochs=1), verbose=0)
    kernel = conv.kernel.numpy()
    assert np.all(kernel[..., :4] == 0) and np.any(kernel[..., 4:] != 0)
    assert conv.kernel.constraint is not None


def test_softmax_output_uses_probabilities_and_label_smoothing_uses_one_hot_labels():
    x, y = _data(128)
    config = FAST.replace(epochs=1, label_smoothing=0.1)
    result = train(_tiny(activation="softmax"), (x, y), (x[:64], y[:64]), config=config, verbose=0)
    loss = result.model.loss
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.get_config()["from_logits"] is False
    assert loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    assert np.isfinite(result.history["val_loss"]).all()

    logits = train(_tiny(), (x, y), config=FAST.replace(epochs=1), verbose=0).model.loss
    assert isinstance(logits, keras.losses.SparseCategoricalCrossentropy)
    assert logits.get_config()["from_logits"] is True


def test_a_softmax_inside_a_nested_model_is_trained_as_probabilities():
    x, y = _data(128)
    inputs = keras.Input((32, 32, 3))
    nested = keras.Model(inputs, _tiny(activation="softmax")(inputs))
    result = train(nested, (x, y), config=FAST.replace(epochs=1), verbose=0)
    assert result.model.loss.get_config()["from_logits"] is False


def test_ready_datasets_and_steps_per_epoch_are_accepted():
    x, y = _data(256)
    ds = cifar10_dataset(x, y, batch_size=64, seed=0)
    result = train(_tiny(), ds, config=FAST.replace(epochs=2, steps_per_epoch=3), verbose=0)
    assert result.steps_per_epoch == 3
    assert int(result.model.optimizer.iterations.numpy()) == 6
    with pytest.raises(ValueError, match="batch size"):
        train(_tiny(), ds, config=FAST.replace(batch_size=128), verbose=0)


def test_mixed_precision_builds_with_model_fn_and_restores_the_policy():
    x, y = _data(128)
    result = train(
        model_fn=_tiny,
        train_data=(x, y),
        config=FAST.replace(epochs=1, mixed_precision=True),
        verbose=0,
    )
    assert result.model.compute_dtype == "float16"
    assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.mixed_precision.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="model_fn"):
        train(_tiny(), (x, y), config=FAST.replace(mixed_precision=True), verbose=0)


def test_train_needs_exactly_one_of_model_and_model_fn():
    x, y = _data(64)
    with pytest.raises(ValueError, match="exactly one"):
        train(train_data=(x, y), verbose=0)
    with pytest.raises(ValueError, match="exactly one"):
        train(_tiny(), (x, y), model_fn=_tiny, verbose=0)


def test_tf_keras_models_train_too():
    tf_keras = pytest.importorskip("tf_keras")
    inputs = tf_keras.Input((32, 32, 3))
    h = tf_keras.layers.Rescaling(1 / 255)(inputs)
    h = tf_keras.layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    outputs = tf_keras.layers.Dense(10)(tf_keras.layers.GlobalAveragePooling2D()(h))
    model = tf_keras.Model(inputs, outputs)
    x, y = _data(256)
    result = train(model, (x, y), (x[:64], y[:64]), config=FAST.replace(epochs=2), verbose=0)
    assert isinstance(result.model.optimizer, tf_keras.optimizers.SGD)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert model.losses == []  # the L2 penalty was removed again


MIRRORED = textwrap.dedent(
    """
    import json, os
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tf_precrop.data import cifar10_dataset
    from tf_precrop.training import TrainConfig, train

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    y = np.arange(256) % 10

    def build():
        keras.utils.set_random_seed(1)
        i = keras.Input((32, 32, 3))
        h = keras.layers.Conv2D(4, 3, strides=4)(keras.layers.Rescaling(1 / 255)(i))
        return keras.Model(i, keras.layers.Dense(10)(keras.layers.Flatten()(h)))

    out = {"replicas": strategy.num_replicas_in_sync}
    try:
        train(build(), (x, y), config=TrainConfig(epochs=1, batch_size=64),
              strategy=strategy, verbose=0)
    except ValueError as e:
        out["outside_scope_error"] = "strategy.scope()" in str(e)
    # The same batches (no shuffle) with and without the strategy must give the
    # same weights: gradients and the L2 penalty are reduced exactly once.
    config = TrainConfig(epochs=2, batch_size=64, weight_decay=0.05, steps_per_epoch=2)
    fixed = cifar10_dataset(x, y, batch_size=64, training=False)
    a = train(model_fn=build, train_data=fixed, config=config, strategy=strategy, verbose=0)
    b = train(model_fn=build, train_data=fixed, config=config, verbose=0)
    out["mirrored"] = type(a.model.trainable_weights[0].value).__name__
    out["max_weight_diff"] = max(
        float(np.abs(p - q).max()) for p, q in zip(a.model.get_weights(), b.model.get_weights()))
    c = train(model_fn=build, train_data=(x, y), val_data=(x[:64], y[:64]),
              config=TrainConfig(epochs=2, batch_size=64), strategy=strategy, verbose=0)
    out["loss"] = c.history["loss"]
    out["val_accuracy"] = c.val_accuracy
    print("RESULT " + json.dumps(out))
    """
)


def test_mirrored_strategy_over_two_logical_cpus_matches_single_device_training():
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERAS_BACKEND": "tensorflow",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=env,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    assert out["replicas"] == 2
    assert out["outside_scope_error"] is True
    assert out["mirrored"] == "MirroredVariable"
    assert out["max_weight_diff"] < 1e-4
    assert len(out["loss"]) == 2 and all(np.isfinite(out["loss"]))
    assert 0.0 <= out["val_accuracy"] <= 1.0
