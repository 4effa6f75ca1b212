"""C3AE in Keras 3: the library behind the commands in this folder.

Commands (run them from the repository root; each is a thin layer of flags over the library):
  C3AE.py, C3AE_expand.py   train, evaluate (-test) or export (-fz) the age / age + gender model
  test.py                   ages of the faces in an image, a folder, a video or a webcam
  benchmark.py, compare_detectors.py, model_card.py
                            speed tables, detector comparison, a model's card

Library (import these):
  network/     what the model is: layers, the C3AE builder, two-point labels, losses, input contract
  training/    feather rows and the split, augmentation, the trainer, TFLite export, the training CLI
  evaluation/  metrics per source and decade, degraded copies, steadiness, plots
  inference/   AgeEstimator (any model file, any image), the LiteRT runner, video tracks

Importing `nets` is light (no TensorFlow), so inference with a .tflite model stays light.
`nets.AgeEstimator` loads nothing heavy until it is used with a .keras file; `nets.build_c3ae`,
`nets.describe` and `nets.load_c3ae` import Keras on first use. Importing `nets.network.model`
registers the custom layers and losses, so that `keras.models.load_model(path)` works on any
model file this project writes.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["AgeEstimator", "build_c3ae", "describe", "load_c3ae"]


def __getattr__(name):
    if name == "AgeEstimator":
        from nets.inference.predict import AgeEstimator

        return AgeEstimator
    if name in __all__:
        from nets.network import model

        return getattr(model, name)
    raise AttributeError(f"module 'nets' has no attribute {name!r}")
