"""Running an exported .tflite model with LiteRT (`ai-edge-litert`), outputs keyed like the Keras model.

LiteRT is the maintained TFLite runtime (`tf.lite.Interpreter` is deprecated) and needs no
TensorFlow, so inference with a .tflite file stays light.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading

import numpy as np

from detect.quiet import captured_stderr, caused_by_ctrl_c
from nets.network.contract import CROP_NAMES, INPUT_SHAPE, ModelFileError

TFLITE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer


def read_tflite_bytes(path) -> bytes:
    """The bytes of a .tflite file, or ModelFileError saying why they cannot be a TFLite model.

    The interpreter is handed these bytes, not the path: given a path to a damaged file, the
    TFLite runtime can crash the process (a truncated export ended in a segmentation fault).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path} does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"model file {path} is a folder")
    with open(path, "rb") as handle:
        content = handle.read()
    if not content:
        raise ModelFileError(f"model file {path} is empty (0 bytes)")
    if len(content) < 8 or content[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{path} is not a TFLite model file (no TFL3 identifier)")
    return content


class TFLiteModel:
    """A C3AE .tflite file: inputs outer/middle/inner, outputs age, W1 (and gender)."""

    def __init__(self, path, num_threads: int | None = None):
        path = os.fspath(path)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            if caused_by_ctrl_c(exc):  # a Ctrl-C while LiteRT loaded: an interruption, not a missing package
                raise KeyboardInterrupt from exc
            if importlib.util.find_spec("ai_edge_litert") is None:
                raise ModelFileError(f"running {path} needs LiteRT: pip install ai-edge-litert ({exc})") from exc
            raise ModelFileError(f"running {path}: LiteRT is installed but could not be loaded ({exc})") from exc
        content = read_tflite_bytes(path)
        try:
            with captured_stderr() as said:
                self.interpreter = Interpreter(model_content=content, num_threads=num_threads or os.cpu_count())
                runner = self.interpreter.get_signature_runner()
                details = runner.get_output_details()
                input_details = runner.get_input_details()
                inputs, probe = set(input_details), {}
                shapes_ok = all(tuple(d["shape"][1:]) == INPUT_SHAPE for d in input_details.values())
                if inputs == set(CROP_NAMES) and shapes_ok:  # a first run: LiteRT sets up its CPU delegate here
                    probe = runner(**{name: np.zeros((1,) + INPUT_SHAPE, np.float32) for name in CROP_NAMES})
        except Exception as exc:
            reason = (str(exc).strip() or "".join(said).strip() or type(exc).__name__).splitlines()[0]
            raise ModelFileError(f"{path} is not a usable TFLite model (damaged or truncated? {reason})") from exc
        rest = [line for line in "".join(said).splitlines() if line.strip() and "XNNPACK delegate" not in line]
        if rest:  # anything else the runtime said is passed on
            print("\n".join(rest), file=sys.stderr)
        if inputs != set(CROP_NAMES) or "age" not in details or "W1" not in details:
            raise ModelFileError(f"{path} is not a C3AE model (inputs {sorted(inputs)}, outputs {sorted(details)})")
        if not shapes_ok:
            raise ModelFileError(f"{path} takes crops of another size "
                                 f"({[list(d['shape'][1:]) for d in input_details.values()]}, not {list(INPUT_SHAPE)})")
        if not all(np.all(np.isfinite(value)) for value in probe.values()):
            raise ModelFileError(f"{path} answers NaN or infinity: its weights are damaged; refusing to use it")
        self.runner = runner
        self._lock = threading.Lock()  # an interpreter runs one call at a time: its tensors are shared
        self.outputs = sorted(details)
        self.bins = int(details["W1"]["shape"][-1])
        self.path = path

    def predict_crops(self, crops: np.ndarray) -> dict:
        """(N, 3, 64, 64, 3) crops -> {output name: array with N rows}."""
        crops = np.asarray(crops, np.float32)
        feed = {name: np.ascontiguousarray(crops[:, k]) for k, name in enumerate(CROP_NAMES)}
        with self._lock:
            out = self.runner(**feed)
            return {k: np.array(out[k]) for k in self.outputs}  # copies, made before the next call
