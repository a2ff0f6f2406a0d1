"""tf_precrop: structured pruning at initialization for Keras CNNs."""

__version__ = "0.1.0"
