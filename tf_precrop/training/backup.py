"""Resuming an interrupted :func:`~tf_precrop.training.train` call where it stopped.

With ``train(..., backup_dir=path)`` every finished epoch leaves, in ``path``:

- ``epoch-<k>.weights.h5``: the model's weights *and* the optimizer's state
  (iteration count, momenta; Keras 3's ``save_weights`` keeps both), so the
  learning-rate schedule and the momentum carry on exactly;
- ``state.json``, written atomically *after* the weights: the number of
  finished epochs and optimizer steps, the weights file of that epoch, the
  :class:`TrainConfig` and the per-epoch logs so far.

A call killed at any point leaves a consistent pair: until the new
``state.json`` replaces the old one, the old one names the previous weights
file, which is deleted only afterwards. Rerunning the same call (same model
architecture, data and config) restores the weights and the optimizer, moves
the training data on by the finished epochs, and trains the rest; when it
finishes, it removes its files (and the folder, if nothing else is in it).

The data: :func:`train` feeds arrays through
:func:`~tf_precrop.data.cifar10_stream`, where every batch's images, order,
crops and flips depend only on the seed and the batch's step, so the resumed
call starts the stream at its first unfinished step and sees exactly the
batches of an uninterrupted run; the resumed run reaches its weights (up to
float summation order). ``config.seed=None`` draws the stream's seed once and
keeps it in ``state.json``. A ready ``tf.data.Dataset`` resumes exactly only
with ``config.steps_per_epoch`` set (``fit`` then keeps one iterator over the
repeated dataset, and the finished steps are skipped); otherwise its later
epochs see the dataset's next shuffles, with a warning.

What is not restored: the state of layers' own random generators (dropout;
none of the bundled CIFAR models has it), and the throughput of the earlier
epochs (:attr:`TrainResult.images_per_sec` covers the resumed call's epochs).
"""

import glob
import json
import os

from tf_precrop._io import write_json

_STATE = "state.json"
_FORMAT = 1


class TrainingBackup:
    """The per-epoch state of one :func:`train` call in ``backup_dir``.

    Args:
        backup_dir: The folder (created when the first epoch ends).
        config: The call's :class:`TrainConfig`; a backup written under a
            different config is refused, not silently mixed in.
        line: The model's :class:`~tf_precrop.backend.KerasLine`; only Keras 3
            models can be backed up (tf_keras' ``save_weights`` leaves out the
            optimizer state).
    """

    def __init__(self, backup_dir, config, line):
        if not line.weights_keep_optimizer_state:
            raise ValueError(
                "`backup_dir` needs a Keras 3 model: tf_keras' `save_weights` leaves "
                "out the optimizer state, so a resumed run would restart its momentum. "
                "Expected a Keras 3 model, or `backup_dir=None` with "
                "`tf_keras.callbacks.BackupAndRestore` (weights and epoch, not the "
                f"data order) in your own loop. Received: a {line.name} model"
            )
        self.dir = os.fspath(backup_dir)
        self.config = config
        self.epochs_done = 0
        self.rows = []  # per-epoch logs of the finished epochs
        self.stream_seed = None  # the training stream's seed when config.seed is None
        self._weights = None  # file name of the current weights
        state = self._read_state()
        if state is not None:
            self.epochs_done = int(state["epoch"])
            self.rows = list(state["history"])
            self.stream_seed = state.get("stream_seed")
            self._weights = state["weights"]
            self._iterations = int(state["iterations"])

    def _read_state(self):
        path = os.path.join(self.dir, _STATE)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        if state.get("format") != _FORMAT:
            raise ValueError(
                f"{path} is not a tf_precrop training backup of format {_FORMAT}. "
                "Expected a folder written by `train(..., backup_dir=...)`. Received: "
                f"format={state.get('format')!r}; pass another `backup_dir` or delete it"
            )
        expected = _plain(self.config.to_dict())
        differs = sorted(k for k in set(expected) | set(state["config"])
                         if expected.get(k) != state["config"].get(k))
        if differs:
            theirs = {k: state["config"].get(k) for k in differs}
            ours = {k: expected.get(k) for k in differs}
            raise ValueError(
                f"{self.dir} holds an interrupted run with another TrainConfig, so it "
                "cannot be resumed by this call. Expected the same config, or a new "
                f"(or emptied) `backup_dir`. Received: the backup has {theirs}, this "
                f"call {ours}"
            )
        return state

    def restore(self, model):
        """Loads the finished epochs' weights and optimizer state into the compiled ``model``."""
        if not self.epochs_done:
            return
        path = os.path.join(self.dir, self._weights)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(path)
        except ValueError as e:
            raise ValueError(
                f"The backup {path} does not fit this model (it was written for "
                "another architecture). Expected the model of the interrupted run. "
                f"Pass another `backup_dir` or delete this one. Keras said: {e}"
            ) from e
        # Keras only warns when the optimizer's variables do not match; the
        # step count tells whether its state really came back.
        iterations = int(model.optimizer.iterations.numpy())
        if iterations != self._iterations:
            raise ValueError(
                f"The optimizer state in {path} was not restored (Keras skipped it: "
                "the optimizer has other variables than the interrupted run's). "
                f"Expected {self._iterations} finished steps. Received: {iterations}. "
                "Resume with the same model and optimizer, or pass another `backup_dir`."
            )

    def save(self, model, epochs_done, rows):
        """Writes the weights of ``epochs_done`` finished epochs, then the state naming them."""
        os.makedirs(self.dir, exist_ok=True)
        name = f"epoch-{epochs_done:04d}.weights.h5"
        model.save_weights(os.path.join(self.dir, name), overwrite=True)
        write_json(
            os.path.join(self.dir, _STATE),
            {
                "format": _FORMAT,
                "epoch": epochs_done,
                "weights": name,
                "iterations": int(model.optimizer.iterations.numpy()),
                "config": _plain(self.config.to_dict()),
                "stream_seed": self.stream_seed,
                "history": rows,
            },
        )
        self._remove_weights(keep=name)
        self.epochs_done, self.rows, self._weights = epochs_done, list(rows), name

    def clear(self):
        """Removes the backup's files, and its folder if nothing else is left in it."""
        self._remove_weights(keep=None)
        state = os.path.join(self.dir, _STATE)
        if os.path.exists(state):
            os.remove(state)
        if os.path.isdir(self.dir) and not os.listdir(self.dir):
            os.rmdir(self.dir)

    def _remove_weights(self, keep):
        for path in glob.glob(os.path.join(glob.escape(self.dir), "epoch-*.weights.h5")):
            if os.path.basename(path) != keep:
                os.remove(path)

    def callback(self, base, history):
        """A ``base`` (Keras ``Callback``) saving the state after every epoch.

        ``history`` is the JSON-history callback whose ``rows`` hold every
        epoch's logs (restored ones first); it must run before this one.
        """
        backup = self

        class Backup(base):
            def on_epoch_end(self, epoch, logs=None):
                backup.save(self.model, epoch + 1, history.rows)

        return Backup()


def _plain(d):
    """``d`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(d))
