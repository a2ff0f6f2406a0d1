"""profile() against an independent MAC count, for one keras.applications CNN per family.

The count here is written out from each layer's config and its input/output
shapes (``kernel_size``, ``filters``, ``groups``, ``depth_multiplier``, the
spatial size Keras computed), not from the channel graph's cost polynomials
that ``profile()`` evaluates; MACs are multiply-accumulates of conv,
depthwise, separable and dense kernels per example (bias, BN, activations and
merges count zero), as documented in :mod:`tf_precrop.profile`.
"""

import builders
import pytest

import tf_precrop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::UserWarning:keras"),
]

compat_sweep = builders.compat_sweep()
MODELS = [name for name, line in builders.SWEEP_CASES if line == "keras3"]


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
