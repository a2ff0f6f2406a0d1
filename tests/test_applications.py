"""Rebuild and profile of every keras.applications family and every bundled model.

Each model runs in Keras 3 and in tf_keras at the smallest input its builder
accepts with ``weights=None, classes=10`` (32x32; Xception needs 71x71;
NASNetMobile builds at 32x32 with its top). For each: the graph's cost equals
``count_params``; ``rebuild`` at 0.5 and 1.25 builds, keeps the input/output
shapes, runs forward, and holds exactly the predicted parameters and MACs; the
0.5 model survives a ``.keras`` round trip; the original model is untouched.
"""

import builders
import numpy as np
import pytest
import tensorflow as tf

import tf_precrop
from tf_precrop.backend import get_line

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),
    pytest.mark.filterwarnings("ignore::UserWarning:keras"),
]

APPLICATIONS = {
    "ResNet50": 32,
    "ResNet50V2": 32,
    "MobileNet": 32,
    "MobileNetV2": 32,
    "MobileNetV3Small": 32,
    "MobileNetV3Large": 32,
    "EfficientNetB0": 32,
    "DenseNet121": 32,
    "Xception": 71,
    "NASNetMobile": 32,
}
"""Application name → smallest square input size it builds at."""

BUNDLED = ("resnet20", "resnet56", "shufflenet_v2", "mobilenet_v2_cifar")


def build_application(name, line):
    k = get_line(line).keras
    size = APPLICATIONS[name]
    return getattr(k.applications, name)(weights=None, classes=10, input_shape=(size, size, 3))


def build_bundled(name, line):
    models = tf_precrop.models
    if name == "shufflenet_v2":
        return models.shufflenet_v2(
            input_shape=(32, 32, 3), classes=10, width=0.5, stem="cifar", line=line
        )
    return getattr(models, name)(line=line)


def outputs(model, x):
    return [np.asarray(t) for t in tf.nest.flatten(model(x, training=False))]


def check_model(model, line, tmp_path):
    config = model.get_config()
    weights = [w.copy() for w in model.get_weights()]
    graph = tf_precrop.channel_groups(model)
    assert tf_precrop.profile(model, graph=graph).params == model.count_params()
    assert graph.free_groups, "expected something to prune"

    x = builders.sample_inputs(model)
    half = None
    for multiplier in (0.5, 1.25):
        predicted = tf_precrop.profile(model, multiplier, graph=graph)
        new = tf_precrop.rebuild(model, multiplier, graph=graph)
        assert new is not model and new.name == model.name
        assert builders.input_shapes(new) == builders.input_shapes(model)
        assert builders.output_shapes(new) == builders.output_shapes(model)
        assert [layer.name for layer in new.layers] == [layer.name for layer in model.layers]
        assert predicted.params == new.count_params()
        assert (predicted.params > model.count_params()) == (multiplier > 1)
        assert predicted.macs == tf_precrop.profile(new).macs
        (y,) = outputs(new, x)
        assert y.shape == (2, 10) and np.isfinite(y).all()
        if multiplier == 0.5:
            half = new

    path = tmp_path / f"{model.name}.keras"
    half.save(path)
    loaded = get_line(line).load_model(str(path))
    np.testing.assert_array_equal(outputs(loaded, x)[0], outputs(half, x)[0])

    assert model.get_config() == config
    now = model.get_weights()
    assert len(now) == len(weights)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(now, weights, strict=True))


@pytest.mark.parametrize("line", builders.LINES)
@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_keras_application_rebuilds_profiles_and_round_trips(name, line, tmp_path):
    check_model(build_application(name, line), line, tmp_path)


@pytest.mark.parametrize("line", builders.LINES)
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_rebuilds_profiles_and_round_trips(name, line, tmp_path):
    check_model(build_bundled(name, line), line, tmp_path)
