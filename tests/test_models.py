"""Tests of the bundled architectures in tf_precrop.models."""

import keras
import numpy as np
import pytest

import tf_precrop.layers  # noqa: F401  (registers ChannelSplit / ChannelShuffle)
from tf_precrop import models
from tf_precrop.models import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    cifar_resnet,
    get_model,
    make_divisible,
    mobilenet_v2_cifar,
    shufflenet_v2,
)

# (total incl. BN moving statistics, trainable) computed once from the models.
RESNET_PARAMS = {
    20: (274_042, 272_474),
    32: (469_370, 466_906),
    44: (664_698, 661_338),
    56: (860_026, 855_770),
    110: (1_739_002, 1_730_714),
}
PUBLISHED_RESNET = {20: 0.27e6, 56: 0.85e6, 110: 1.7e6}

# ImageNet stem, 224x224, 1000 classes. Trainable counts equal torchvision's.
SHUFFLENET_PARAMS = {
    0.5: (1_374_744, 1_366_792),
    1.0: (2_294_784, 2_278_604),
    1.5: (3_527_064, 3_503_624),
    2.0: (7_427_712, 7_393_996),
}
TORCHVISION_SHUFFLENET_X1_0 = 2_278_604


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("depth", sorted(RESNET_PARAMS))
def test_cifar_resnet_has_the_expected_parameter_count(depth):
    model = getattr(models, f"resnet{depth}")()
    assert (model.count_params(), trainable_count(model)) == RESNET_PARAMS[depth]
    assert model.name == f"resnet{depth}"
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("depth", sorted(PUBLISHED_RESNET))
def test_cifar_resnet_parameter_count_is_within_5_percent_of_the_paper(depth):
    total, trainable = RESNET_PARAMS[depth]
    for count in (total, trainable):
        assert abs(count - PUBLISHED_RESNET[depth]) / PUBLISHED_RESNET[depth] < 0.05


def test_resnet_uses_option_b_projection_only_where_the_shape_changes():
    model = cifar_resnet(20)
    names = {layer.name for layer in model.layers}
    assert {"stage2_block1_shortcut_conv", "stage3_block1_shortcut_bn"} <= names
    assert not any(n.startswith("stage1") and "shortcut" in n for n in names)
    assert not any(n.startswith("stage2_block2") and "shortcut" in n for n in names)
    conv = model.get_layer("stage2_block1_shortcut_conv")
    assert conv.kernel_size == (1, 1) and conv.strides == (2, 2) and not conv.use_bias


def test_weight_decay_adds_l2_regularizers_only_when_positive():
    plain = cifar_resnet(20, width=0.25)
    assert all(getattr(layer, "kernel_regularizer", None) is None for layer in plain.layers)
    assert plain.get_layer("stage3_block3_conv2").filters == 16
    decayed = cifar_resnet(20, width=0.25, weight_decay=1e-4)
    assert decayed.get_layer("stem_conv").kernel_regularizer is not None
    assert decayed.get_layer("predictions").kernel_regularizer is not None
    assert len(decayed.losses) == 22  # 19 convs + 2 projections + Dense


def test_resnet_depth_that_is_not_6n_plus_2_is_rejected():
    with pytest.raises(ValueError, match=r"6n \+ 2.*Received: depth=21"):
        cifar_resnet(21)


@pytest.mark.parametrize("width", sorted(SHUFFLENET_PARAMS))
def test_shufflenet_v2_imagenet_has_the_expected_parameter_count(width):
    model = shufflenet_v2(width=width)
    assert (model.count_params(), trainable_count(model)) == SHUFFLENET_PARAMS[width]
    assert model.get_layer("conv5").output.shape[1:3] == (7, 7)


def test_shufflenet_v2_x1_0_is_within_2_percent_of_torchvision():
    _, trainable = SHUFFLENET_PARAMS[1.0]
    assert abs(trainable - TORCHVISION_SHUFFLENET_X1_0) / TORCHVISION_SHUFFLENET_X1_0 < 0.02


def test_tf_keras_builds_have_the_same_parameter_counts():
    tf_keras = pytest.importorskip("tf_keras")
    resnet = cifar_resnet(20, line="tf_keras")
    shufflenet = shufflenet_v2(width=1.0, line="tf_keras")
    assert isinstance(resnet, tf_keras.Model) and isinstance(shufflenet, tf_keras.Model)
    assert (resnet.count_params(), trainable_count(resnet)) == RESNET_PARAMS[20]
    assert (shufflenet.count_params(), trainable_count(shufflenet)) == SHUFFLENET_PARAMS[1.0]


def test_shufflenet_v2_cifar_stem_keeps_the_resolution_until_stage2():
    model = shufflenet_v2((32, 32, 3), classes=10, width=0.5, stem="cifar")
    names = {layer.name for layer in model.layers}
    assert "stem_pool" not in names
    assert model.get_layer("stem_relu").output.shape[1:] == (32, 32, 24)
    assert model.get_layer("conv5").output.shape[1:] == (4, 4, 1024)
    assert model.output_shape == (None, 10)
    assert type(model.get_layer("stage2_block2_split")).__name__ == "ChannelSplit"
    assert type(model.get_layer("stage4_block1_shuffle")).__name__ == "ChannelShuffle"


def test_mobilenet_v2_cifar_forward_pass_gives_one_row_of_logits_per_image():
    model = mobilenet_v2_cifar()
    out = model(np.zeros((2, 32, 32, 3), "float32"), training=False)
    assert tuple(out.shape) == (2, 10)
    assert model.get_layer("last_relu").output.shape[1:] == (4, 4, 1280)
    assert trainable_count(model) == 2_236_682  # ImageNet MobileNetV2 with 10 classes


def test_make_divisible_rounds_to_multiples_of_8_without_losing_over_10_percent():
    assert make_divisible(116) == 120
    assert make_divisible(32 * 0.35) == 16
    assert make_divisible(3) == 8
    assert make_divisible(1280 * 1.4) == 1792


def test_normalize_true_maps_raw_pixels_to_cifar_standard_scores():
    model = cifar_resnet(20, input_shape=(8, 8, 3), normalize=True)
    raw = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    assert np.isfinite(keras.ops.convert_to_numpy(model(raw, training=False))).all()
    front = keras.Model(model.input, model.get_layer("input_normalize").output)
    white = keras.ops.convert_to_numpy(front(np.full((1, 8, 8, 3), 255.0, "float32")))
    expected = (1.0 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)
    np.testing.assert_allclose(white[0, 0, 0], expected, rtol=1e-5)


def test_reshape_shuffle_gives_the_same_outputs_as_the_shuffle_layer():
    kwargs = dict(input_shape=(16, 16, 3), classes=10, width=0.5, stem="cifar")
    with_layer = shufflenet_v2(shuffle="layer", **kwargs)
    with_reshape = shufflenet_v2(shuffle="reshape", **kwargs)
    names = {layer.name for layer in with_reshape.layers}
    assert {"stage3_block2_shuffle_reshape1", "stage3_block2_shuffle_permute"} <= names
    assert "stage3_block2_split" in names and "stage3_block2_shuffle" not in names
    with_reshape.set_weights(with_layer.get_weights())
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(with_reshape(x, training=False)),
        keras.ops.convert_to_numpy(with_layer(x, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_reshape_shuffle_without_a_fixed_spatial_size_is_rejected():
    with pytest.raises(ValueError, match="spatial size"):
        shufflenet_v2((None, None, 3), classes=10, stem="cifar", shuffle="reshape")


def test_keras_model_with_split_and_shuffle_layers_survives_a_safe_mode_round_trip(tmp_path):
    model = shufflenet_v2((16, 16, 3), classes=10, width=0.5, stem="cifar", normalize=True)
    path = tmp_path / "shufflenet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).uniform(0, 255, (1, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )
    assert type(loaded.get_layer("stage2_block2_split")) is type(
        model.get_layer("stage2_block2_split")
    )


def test_get_model_builds_by_name_and_lists_known_names_for_an_unknown_one():
    assert set(models.ARCHITECTURES) == {
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
        "shufflenet_v2", "mobilenet_v2_cifar",
    }  # fmt: skip
    model = get_model("resnet20", classes=100, classifier_activation="softmax")
    assert model.output_shape == (None, 100)
    with pytest.raises(ValueError, match=r"Unknown architecture.*resnet56.*Received: name='vgg'"):
        get_model("vgg")
