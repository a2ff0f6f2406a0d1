"""CIFAR-10 constants shared by the loaders and the input pipeline."""

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""Class names; a label is the index of its class name (alphabetical order)."""

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the CIFAR-10 training images, on the [0, 1] scale."""

CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of the CIFAR-10 training images, [0, 1] scale."""

NUM_CLASSES = len(CIFAR10_CLASSES)
