"""``import tf_precrop`` is TensorFlow-free, yet saved models load right after it.

Each check runs in a fresh interpreter (``sys.modules`` of the test process
already holds TensorFlow), on this checkout's tf_precrop (``PYTHONPATH``).
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NAMES = ["tf_precrop>ChannelSplit", "tf_precrop>ChannelShuffle", "tf_precrop>FixedMask", "tf_precrop>LRSchedule"]


def python(code, cwd):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "could not register" not in result.stderr, result.stderr[-3000:]
    return result.stdout


def test_import_tf_precrop_does_not_import_tensorflow_or_keras(tmp_path):
    out = python(
        """
        import sys
        import tf_precrop
        print("file", tf_precrop.__file__)
        heavy = sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules)
        print("heavy", heavy)
        print("api", callable(tf_precrop.crop), callable(tf_precrop.plan), callable(tf_precrop.profile))
        """,
        tmp_path,
    )
    assert f"file {REPO / 'tf_precrop' / '__init__.py'}" in out
    assert "heavy []" in out and "api True True True" in out


@pytest.fixture(scope="module")
def shuffle_model(tmp_path_factory):
    """A .keras file with tf_precrop's ChannelShuffle layer, saved in another process."""
    path = tmp_path_factory.mktemp("saved") / "shuffle.keras"
    python(
        f"""
        import keras
        from tf_precrop.layers import ChannelShuffle
        x = keras.Input((8, 8, 4))
        y = ChannelShuffle(2)(keras.layers.Conv2D(4, 1)(x))
        keras.Model(x, y).save({str(path)!r})
        """,
        path.parent,
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "imports",
    [
        "import tf_precrop\nimport keras",  # keras after: the import hook registers
        "import keras\nimport tf_precrop",  # keras before: registered at once
        "import tf_precrop\nimport tensorflow as tf\nkeras = tf.keras",  # keras through tf.keras
        # tf_precrop.data imports TensorFlow, which imports Keras, while data is half-imported;
        # registration (which imports tf_precrop.training, which imports data) waits for it.
        "from tf_precrop import data\nimport keras",
    ],
    ids=["keras-after", "keras-before", "tf.keras", "keras-inside-a-stage"],
)
def test_saved_models_load_after_import_tf_precrop(imports, shuffle_model, tmp_path):
    out = python(
        imports
        + f"""
import sys
model = keras.models.load_model({str(shuffle_model)!r})
print("layers", [type(layer).__name__ for layer in model.layers])
from keras.saving import get_registered_object
print("registered", all(get_registered_object(n) is not None for n in {NAMES!r}))
print("hook left", any(type(f).__name__ == "_RegisterAfterKeras" for f in sys.meta_path))
""",
        tmp_path,
    )
    assert "registered True" in out, out
    assert "ChannelShuffle" in out, out
    assert "hook left False" in out, out


def test_loading_without_import_tf_precrop_still_fails(shuffle_model, tmp_path):
    """The registration above is what makes loading work (the test is not vacuous)."""
    out = python(
        f"""
        import keras
        try:
            keras.saving.load_model({str(shuffle_model)!r})
            print("loaded")
        except Exception as e:
            print("failed", type(e).__name__)
        """,
        tmp_path,
    )
    assert "failed" in out, out
