"""profile() against an independent MAC count, for one keras.applications CNN per family.

The count here is written out from each layer's config and its input/output
shapes (``kernel_size``, ``filters``, ``groups``, ``depth_multiplier``, the
spatial size Keras computed), not from the channel graph's cost polynomials
that ``profile()`` evaluates; MACs are multiply-accumulates of conv,
depthwise, separable and dense kernels per example (bias, BN, activations and
merges count zero), as documented in :mod:`tf_precrop.profile`.
"""

import importlib.util
import pathlib

import builders
import pytest

import tf_precrop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::UserWarning:keras"),
]

_SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "compat_sweep.py"
_spec = importlib.util.spec_from_file_location("compat_sweep_for_macs", _SCRIPT)
compat_sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compat_sweep)

MODELS = [
    "ResNet50", "ResNet50V2", "MobileNet", "MobileNetV2", "MobileNetV3Small", "EfficientNetB0",
    "EfficientNetV2B0", "DenseNet121", "Xception", "InceptionV3", "NASNetMobile",
    "ConvNeXtTiny", "VGG16",
]


@pytest.mark.parametrize("name", MODELS)
def test_profile_macs_equal_a_count_from_layer_configs_and_shapes(name):
    model = compat_sweep.build(name, "keras3")
    expected = builders.independent_macs(model)
    assert expected > 0
    assert tf_precrop.profile(model).macs == expected


def test_the_independent_count_gives_the_published_resnet50_macs():
    # ResNet-50 at 224x224 is quoted as 3.8-4.1 GMACs (depending on where the
    # stride-2 convolutions sit); Keras' variant has 25,636,712 parameters.
    import keras

    model = keras.applications.ResNet50(weights=None)
    assert model.count_params() == 25_636_712
    count = builders.independent_macs(model)
    assert 3.8e9 < count < 4.2e9
    assert tf_precrop.profile(model).macs == count
