"""Running an exported .tflite model with the TFLite interpreter, outputs keyed like the Keras model."""
from __future__ import annotations

import os
import warnings

import numpy as np

from nets.model import CROP_NAMES, ModelFileError


class TFLiteModel:
    """A C3AE .tflite file: inputs outer/middle/inner, outputs age, W1 (and gender)."""

    def __init__(self, path):
        import tensorflow as tf

        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelFileError(f"model file {path} does not exist")
        try:
            with warnings.catch_warnings():  # its deprecation notice is not for our users
                warnings.simplefilter("ignore")
                self.interpreter = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count())
            runner = self.interpreter.get_signature_runner()
        except Exception as exc:
            raise ModelFileError(f"{path} is not a usable TFLite model ({exc})") from exc
        self.runner = runner
        details = runner.get_output_details()
        inputs = set(runner.get_input_details())
        if inputs != set(CROP_NAMES) or "age" not in details or "W1" not in details:
            raise ModelFileError(f"{path} is not a C3AE model (inputs {sorted(inputs)}, outputs {sorted(details)})")
        self.outputs = sorted(details)
        self.bins = int(details["W1"]["shape"][-1])
        self.path = path

    def predict_crops(self, crops: np.ndarray) -> dict:
        """(N, 3, 64, 64, 3) crops -> {output name: array with N rows}."""
        crops = np.asarray(crops, np.float32)
        out = self.runner(**{name: np.ascontiguousarray(crops[:, k]) for k, name in enumerate(CROP_NAMES)})
        return {k: np.asarray(out[k]) for k in self.outputs}
