"""What a C3AE model takes and the error for model files: no TensorFlow needed to import this.

The inference path (`nets/inference/predict.py` with a .tflite file, `nets/test.py`) imports only this,
so it runs with numpy, OpenCV and LiteRT alone.
"""
import hashlib
import re
from pathlib import Path

CROP_NAMES = ("outer", "middle", "inner")
INPUT_SHAPE = (64, 64, 3)
INPUT_CONTRACT = {
    "crops": list(CROP_NAMES), "shape": list(INPUT_SHAPE), "dtype": "float32",
    "pixels": "BGR, 0..255 (uint8 range)",
    "made_by": "detect.prepare_faces: detector (YuNet or MTCNN: use the one the training data was prepared "
               "with), 256x256 aligned chip (JPEG q95), triple box",
}


class ModelFileError(ValueError):
    """A model file that is missing, of the wrong kind or has non-finite weights."""


TRUNK_WIDTH = 32  # channels of every convolution of the trunk in Table 1 (--width)


def beside_model(model_path, suffix: str) -> Path:
    """NAME.keras, or an export of it NAME.KIND.tflite -> NAME<suffix> (its card, its calibration)."""
    path = Path(model_path)
    stem = re.sub(r"(\.[A-Za-z0-9]+)?\.tflite$", "", path.name) if path.suffix == ".tflite" else path.stem
    return path.with_name(stem + suffix)


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def artifact(save_path, suffix: str) -> Path:
    """NAME.keras -> NAME<suffix>."""
    path = Path(save_path)
    stem = path.name[:-len(".keras")] if path.name.endswith(".keras") else path.name
    return path.with_name(stem + suffix)
