"""C3AE in Keras 3.

Importing `nets` is light (no TensorFlow), so that inference with a .tflite model stays light.
`nets.build_c3ae`, `nets.describe` and `nets.load_c3ae` import Keras on first use; importing
`nets.model` registers the custom layers and losses, so that `keras.models.load_model(path)`
works on any model file this project writes.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["build_c3ae", "describe", "load_c3ae"]


def __getattr__(name):
    if name in __all__:
        from nets import model

        return getattr(model, name)
    raise AttributeError(f"module 'nets' has no attribute {name!r}")
