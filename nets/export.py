"""Freezing to TFLite (float32, dynamic-range quantised, optionally float16) with a parity check."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nets.contract import INPUT_SHAPE

MAX_AGE_DIFFERENCE = 0.5  # years; the float32 export must agree with Keras this closely


def convert(model, kind: str) -> bytes:
    """TFLite bytes of a float32 Keras model: float32, dynamic-range quantised or float16 weights."""
    import contextlib
    import io

    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind in ("dynamic", "float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "float16":
        converter.target_spec.supported_types = [tf.float16]
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its temporary export
        return converter.convert()


def parity_crops(count: int = 8, seed: int = 0) -> np.ndarray:
    """Test crops without the data set: the shipped demo face (if present) and random images."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, size=(count, 3) + INPUT_SHAPE, dtype=np.uint8)
    demo = Path(__file__).resolve().parents[1] / "assets" / "astronaut.jpg"
    if demo.exists():
        from detect import FaceDetector, load_image, prepare_faces

        faces = prepare_faces(load_image(demo), FaceDetector())
        if faces:
            crops[0] = faces[0].crops()
    return crops


def export_tflite(model_path, float16: bool = False, log=print) -> dict:
    """Write NAME.float32.tflite and NAME.dynamic.tflite (and NAME.float16.tflite) beside the model,
    compare them with the Keras model on the same crops, return the report."""
    from nets.data import as_inputs
    from nets.model import as_float32, load_c3ae
    from nets.tflite import TFLiteModel
    from nets.train import artifact

    model = as_float32(load_c3ae(model_path))
    crops = parity_crops()
    expected = model.predict(as_inputs(crops), verbose=0)
    report = {}
    for kind in ("float32", "dynamic") + (("float16",) if float16 else ()):
        path = artifact(model_path, f".{kind}.tflite")
        path.write_bytes(convert(model, kind))
        got = TFLiteModel(path).predict_crops(crops)
        entry = {"path": str(path), "bytes": path.stat().st_size,
                 "max_age_difference": round(float(np.abs(got["age"] - expected["age"]).max()), 5)}
        if "gender" in expected:
            entry["max_gender_prob_difference"] = round(
                float(np.abs(got["gender"] - expected["gender"]).max()), 5)
        report[kind] = entry
        log(f"{path}: {entry['bytes']} bytes, largest age difference to Keras "
            f"{entry['max_age_difference']:.4f} years"
            + (f", gender probability {entry['max_gender_prob_difference']:.4f}" if "gender" in expected else ""))
    report["parity_ok"] = report["float32"]["max_age_difference"] <= MAX_AGE_DIFFERENCE and \
        report["float32"].get("max_gender_prob_difference", 0) <= 0.01
    return report
