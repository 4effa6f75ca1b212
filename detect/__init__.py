"""Face detection, alignment and the triple-box crops: the one preprocessing path of C3AE.

Data preparation (`preprocessing/dataset_proc.py`), the training input pipeline and inference
(`nets/inference/predict.py`) all call the functions exported here, so a face is cut the same way
everywhere.
"""
from detect.align import CHIP_SIZE, EYE_MIDPOINT, align_face, transform_points, transform_box
from detect.triple_box import CROP_SIZE, crop_box, crop_triple, triple_boxes
from detect.pose import head_pose
from detect.prepare import (
    JPEG_QUALITY,
    PreparedFace,
    decode_chip,
    load_image,
    prepare_faces,
    printable_name,
    utf8_name,
    ImageReadError,
)
from detect.detector import (
    DEFAULT_DETECTOR, DETECTORS, LANDMARK_NAMES, DetectorError, FaceDetector, MTCNNDetector, YuNetDetector, make_detector,
)

__all__ = [
    "CHIP_SIZE", "EYE_MIDPOINT", "align_face", "transform_points", "transform_box",
    "CROP_SIZE", "crop_box", "crop_triple", "triple_boxes", "head_pose", "JPEG_QUALITY",
    "PreparedFace", "decode_chip", "load_image", "prepare_faces", "printable_name", "utf8_name",
    "ImageReadError",
    "FaceDetector", "LANDMARK_NAMES", "DetectorError", "DEFAULT_DETECTOR", "DETECTORS", "MTCNNDetector",
    "YuNetDetector", "make_detector",
]
