"""tf_precrop._io: atomic writes of JSON and of Keras model files."""

import os

import numpy as np
import pytest

from tests.builders import LINES, keras_of
from tf_precrop._io import atomic_path, save_model, write_json


def _model(line):
    k = keras_of(line)
    x = k.Input((4,), name="x")
    model = k.Model(x, k.layers.Dense(3, name="d")(x), name="tiny")
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, 4), "float32"), np.zeros((8, 3), "float32"), epochs=1, verbose=0)
    return model


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize("include_optimizer", [True, False])
def test_save_model_round_trips_weights(tmp_path, line, include_optimizer):
    model = _model(line)
    path = str(tmp_path / "m.keras")
    assert save_model(model, path, include_optimizer=include_optimizer) == path
    loaded = keras_of(line).models.load_model(path)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # With the optimizer the file keeps its state (one step taken); without, none.
    optimizer = getattr(loaded, "optimizer", None)
    steps = 0 if optimizer is None else int(np.asarray(optimizer.iterations))
    assert steps == (1 if include_optimizer else 0)
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]  # no staging file left


def test_failed_save_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"previous")

    class Broken:
        def save(self, staging):
            with open(staging, "wb") as f:
                f.write(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model(Broken(), str(path))
    assert path.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


def test_atomic_path_needs_an_existing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="destination folder does not exist"):
        with atomic_path(tmp_path / "missing" / "x.json"):
            pass
    write_json(tmp_path / "x.json", {"a": 1})
    assert (tmp_path / "x.json").read_text() == '{\n  "a": 1\n}'
