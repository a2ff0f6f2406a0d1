"""The callbacks of :func:`~tf_precrop.training.train`: lr logging, throughput, JSON history.

Each callback subclasses the ``Callback`` of the model's Keras line, so the
classes are made per call by one small factory each.
"""

import time

from tf_precrop._io import write_json


def _callback_base(line):
    return line.keras.callbacks.Callback


def _make_callbacks(line, schedule, images_per_step, json_path, config, rows=()):
    """``(lr logger, throughput, JSON history)`` callbacks of ``line``.

    ``rows``: the logs of epochs restored from a backup, which the JSON history
    starts with.
    """
    base = _callback_base(line)
    return (
        _learning_rate_logger(base, schedule),
        _throughput(base, images_per_step),
        _json_history(base, json_path, config, rows),
    )


def _learning_rate_logger(base, schedule):
    class LearningRateLogger(base):
        """Adds the lr of the epoch's last step to the logs (before History)."""

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                step = max(int(self.model.optimizer.iterations.numpy()) - 1, 0)
                logs["learning_rate"] = float(schedule(step))

    return LearningRateLogger()


def _throughput(base, images_per_step):
    class Throughput(base):
        """Times the training part of each epoch (validation excluded).

        The first epoch of the call (epoch 0, or the first after a resume)
        is timed from its second step, so tracing is left out.
        """

        def __init__(self):
            super().__init__()
            self.epochs = []  # (seconds, steps) per epoch
            self.first_epoch_after_step0 = None  # (seconds, steps)

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()
            self._after_step0 = None
            self._train_end = None
            self._steps = 0

        def on_train_batch_begin(self, batch, logs=None):
            self._steps = batch + 1
            if not self.epochs and batch == 1:
                self._after_step0 = time.perf_counter()

        def on_test_begin(self, logs=None):
            if self._train_end is None:
                self._train_end = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            end = self._train_end or time.perf_counter()
            if not self.epochs and self._after_step0 is not None:
                self.first_epoch_after_step0 = (end - self._after_step0, self._steps - 1)
            self.epochs.append((end - self._start, self._steps))

        def images_per_second(self):
            if len(self.epochs) >= 2:
                seconds = sum(s for s, _ in self.epochs[1:])
                steps = sum(n for _, n in self.epochs[1:])
            elif self.first_epoch_after_step0 is not None:
                seconds, steps = self.first_epoch_after_step0
            elif self.epochs:
                seconds, steps = self.epochs[0]
            else:
                return None
            return steps * images_per_step / seconds if seconds > 0 else None

    return Throughput()


def _json_history(base, json_path, config, rows=()):
    class JsonHistory(base):
        """Rewrites ``history.json`` (config + per-epoch logs) after every epoch."""

        def __init__(self):
            super().__init__()
            self.rows = list(rows)

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append({"epoch": epoch, **_jsonable(logs or {})})
            if json_path is not None:
                _write_json(json_path, {"config": config.to_dict(), "epochs": self.rows})

    return JsonHistory()


def _jsonable(logs):
    out = {}
    for k, v in logs.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = str(v)
    return out


def _write_json(path, obj):
    write_json(path, obj)
