"""MTCNN face detector over the PyPI `mtcnn` package (its bundled weights, so it works offline)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Order of the 5 landmarks everywhere in this project. "left"/"right" are as seen in the image
# (left_eye has the smaller x on an upright face), which is MTCNN's own convention.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Detection:
    box: np.ndarray        # (4,) float32: x1, y1, x2, y2 in pixels of the input image
    score: float
    landmarks: np.ndarray  # (5, 2) float32: x, y per point, in LANDMARK_NAMES order

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def to_three_channels(image: np.ndarray) -> np.ndarray:
    """Grayscale (HxW or HxWx1) and 4-channel images become 3-channel uint8 images."""
    import cv2

    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3].copy()
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}")


class FaceDetector:
    """Finds faces with MTCNN and returns boxes, scores and 5 landmarks.

    Args:
        min_face_size: smallest face, in pixels, that the image pyramid looks for.
        thresholds: confidence thresholds of the P-, R- and O-networks.
        pad_retry: when nothing is found, look again in a copy of the image with a black border of
            this fraction of its longer side. Tight face crops (UTKFace, AFAD chips, a face that
            fills the frame) are otherwise missed. 0 disables the retry.
    """

    def __init__(self, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.8), pad_retry: float = 0.25):
        from mtcnn import MTCNN  # imports TensorFlow; kept lazy so that light tools stay light

        self._mtcnn = MTCNN()
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.pad_retry = float(pad_retry)

    def detect(self, image: np.ndarray, color: str = "bgr") -> list[Detection]:
        """Detect faces in an image given as uint8 BGR (OpenCV's order, the default) or RGB.

        Returns detections sorted by decreasing area; coordinates refer to the image as given.
        """
        if color not in ("bgr", "rgb"):
            raise ValueError(f"color must be 'bgr' or 'rgb', not {color!r}")
        image = to_three_channels(np.asarray(image))
        rgb = image[:, :, ::-1] if color == "bgr" else image
        found = self._run(rgb)
        if not found and self.pad_retry > 0:
            pad = int(round(self.pad_retry * max(rgb.shape[:2])))
            padded = np.zeros((rgb.shape[0] + 2 * pad, rgb.shape[1] + 2 * pad, 3), rgb.dtype)
            padded[pad:pad + rgb.shape[0], pad:pad + rgb.shape[1]] = rgb
            found = self._run(padded)
            for det in found:
                det.box -= pad
                det.landmarks -= pad
        return sorted(found, key=lambda d: d.area, reverse=True)

    def _run(self, rgb: np.ndarray) -> list[Detection]:
        if min(rgb.shape[:2]) < 12:
            return []
        rows = self._mtcnn.detect_faces(
            np.ascontiguousarray(rgb, dtype=np.float32),
            box_format="xyxy", output_type="numpy", fit_to_image=False,
            min_face_size=self.min_face_size, threshold_pnet=self.thresholds[0],
            threshold_rnet=self.thresholds[1], threshold_onet=self.thresholds[2],
        )
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, 16)
        # Row layout of mtcnn 1.x: image id, x1, y1, x2, y2, score, 5 landmark x, 5 landmark y.
        return [
            Detection(box=row[1:5].copy(), score=float(row[5]),
                      landmarks=np.stack([row[6:11], row[11:16]], axis=1).copy())
            for row in rows
        ]
