"""Data files shipped with tf_precrop (package data, no code to import).

- ``cifar10_sample.npz``: 500 CIFAR-10 training images (50 per class) as
  ``uint8``, read by ``tf_precrop.data.load_cifar10(source="sample")`` and by
  ``source="auto"`` when no full copy can be found or downloaded. Provenance:
  ``README.md`` in this folder; regenerate with
  ``python -m tf_precrop.datasets.make_cifar10_sample``.
"""
