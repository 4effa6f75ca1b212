"""From an image to prepared faces: detect, align, map box and landmarks, triple box, crops.

`prepare_faces` is what data preparation stores and what inference feeds the model. The chip
goes through the same JPEG encoding in both, so a face seen at inference gives exactly the
crops it would give when read back from a feather file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from detect.align import align_face, transform_box, transform_points
from detect.detector import Detection, FaceDetector, as_bgr
from detect.pose import head_pose
from detect.triple_box import crop_triple, triple_boxes

JPEG_QUALITY = 95


class ImageReadError(ValueError):
    """An input that is missing, empty or not a decodable image."""


def utf8_name(path: str | os.PathLike) -> bool:
    """Whether a file name is valid UTF-8. OpenCV's Python bindings crash (a segmentation fault) on
    one that is not, and a feather text column cannot hold it; Python carries its odd bytes as lone
    surrogates."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(path: str | os.PathLike) -> str:
    """A path as it can be printed and stored: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")

def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as 3-channel uint8 BGR, or raise ImageReadError with the reason."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a folder, not an image")
    if not os.path.isfile(path):  # a pipe or a device would block or never end
        raise ImageReadError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:  # no permission to read it, an I/O error
        raise ImageReadError(f"{path}: cannot be read ({(exc.strerror or type(exc).__name__).lower()})") from exc
    # IMREAD_COLOR: 8-bit BGR whatever the file holds (gray, alpha, 16 bit), EXIF orientation applied
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"{path}: not a readable image")
    return image


def decode_chip(jpeg: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    chip = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), flags)
    if chip is None:
        raise ValueError("stored chip is not a decodable JPEG")
    return chip


@dataclass
class PreparedFace:
    """One face, ready for the model. Coordinates are float32 pixels, boxes x1, y1, x2, y2."""

    box: np.ndarray             # in the input image
    score: float
    landmarks: np.ndarray       # (5, 2) in the input image, LANDMARK_NAMES order
    chip_jpeg: bytes            # the aligned 256x256 BGR chip, JPEG-encoded as stored
    chip_box: np.ndarray        # the box on the chip
    chip_landmarks: np.ndarray  # (5, 2) on the chip
    triple: np.ndarray          # (3, 4) outer, middle, inner boxes on the chip
    pose: np.ndarray            # yaw, pitch, roll in degrees
    chip: np.ndarray = field(repr=False, default=None)  # decoded chip_jpeg
    rotation: int = 0           # degrees the face was turned in the image
    problem: str | None = None  # why its landmarks cannot be an upright face (then its answer is doubtful)

    def crops(self) -> np.ndarray:
        """(3, 64, 64, 3) uint8 BGR crops, the model's input for this face."""
        return crop_triple(self.chip, self.triple)


def prepare_detection(image: np.ndarray, det: Detection) -> PreparedFace:
    """Align one detection and derive everything the model and the feather files need."""
    chip, matrix = align_face(image, det.landmarks)
    ok, encoded = cv2.imencode(".jpg", chip, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding of the chip failed")
    chip_jpeg = encoded.tobytes()
    chip_landmarks = transform_points(det.landmarks, matrix)
    chip_box = transform_box(det.box, matrix, quarter_turned=det.rotation in (90, 270))
    return PreparedFace(
        box=det.box.astype(np.float32), score=det.score,
        landmarks=det.landmarks.astype(np.float32), chip_jpeg=chip_jpeg, chip_box=chip_box,
        chip_landmarks=chip_landmarks, triple=triple_boxes(chip_box, chip_landmarks[2]),
        pose=head_pose(det.landmarks, image.shape), chip=decode_chip(chip_jpeg), rotation=det.rotation,
        problem=det.problem,
    )


def prepare_faces(image: np.ndarray, detector: FaceDetector, color: str = "bgr",
                  max_faces: int | None = None) -> list[PreparedFace]:
    """Detect every face in an image and prepare it; largest faces first.

    image: BGR (default) or RGB as `color` says; grayscale, 4-channel, float 0..1 and 16-bit
    images are converted (detect.detector.as_uint8). The chip is always BGR, as the model was
    trained on BGR pixels.
    """
    bgr = as_bgr(image, color)
    detections = detector.detect(bgr)
    if max_faces is not None:
        detections = detections[:max_faces]
    faces = []
    for det in detections:
        try:
            faces.append(prepare_detection(bgr, det))
        except ValueError:  # points no similarity can align (a mirror image of a face): nothing to say about it
            continue
    return faces
