"""Face detectors with five landmarks: YuNet (OpenCV, fast) and MTCNN (the original's, TensorFlow).

Both return the same `Detection` (box, score, five landmarks in LANDMARK_NAMES order, in the
pixels of the image as given), so alignment, the triple box and the crops after them are one
code path whichever detector found the face. `make_detector(name)` builds either.

What both share lives in `FaceDetector.detect`: conversion of the input to 3-channel uint8 BGR,
detection on a downscaled copy of a large photo (boxes and landmarks are mapped back, so the
face is aligned from the full-resolution photo), a second look in a black-padded copy when a
crop-shaped image shows no face (tight chips such as UTKFace), the smallest face size, and
largest-first order.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detect.orientation import check_orientation, drop_turned_duplicates

# Order of the 5 landmarks everywhere in this project. "left"/"right" are as seen in the image
# (left_eye has the smaller x on an upright face), which is MTCNN's and YuNet's own convention.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

DETECTORS = ("yunet", "mtcnn")
DEFAULT_DETECTOR = "yunet"
YUNET_MODEL = Path(__file__).resolve().parents[1] / "model" / "face_detection_yunet_2023mar.onnx"
MIN_FACE_SIZE = 20     # pixels, the default smallest face
SMALLEST_FACE = 10     # pixels; below this a face carries no age information (the chip is 256 px)
MAX_SIDE = 1280        # pixels; larger photos are detected on a copy of this longer side
CROP_ASPECT = 2.0      # images at most this elongated may be face crops (padded retry)


class DetectorError(RuntimeError):
    """A detector that cannot run here (its package or model file is missing)."""


@dataclass
class Detection:
    box: np.ndarray        # (4,) float32: x1, y1, x2, y2 in pixels of the input image
    score: float
    landmarks: np.ndarray  # (5, 2) float32: x, y per point, in LANDMARK_NAMES order
    rotation: int = 0      # clockwise turn (90, 180, 270) of the copy in which the face was found upright
    problem: str | None = None  # why the landmarks cannot be an upright face (detect.orientation)

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def to_three_channels(image: np.ndarray) -> np.ndarray:
    """Grayscale (HxW or HxWx1) and 4-channel uint8 images become 3-channel images."""
    import cv2

    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3].copy()
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}")


def as_uint8(image) -> np.ndarray:
    """An image array as uint8, converting only what is unambiguous; ValueError for the rest.

    uint8 stays; integer arrays with values in 0..255 are cast; other uint16 images are scaled to
    8 bits as OpenCV reads 16-bit files (value / 256); floats in 0..1 are scaled by 255 and floats
    in 0..255 rounded. Booleans, NaN or infinite values, and values out of range are refused.
    """
    if image is None:
        raise ValueError("got None, not an image (cv2.imread gives None for a file it cannot read)")
    array = np.asarray(image)
    expected = "expected a uint8 image (0..255), a float image in 0..1, or a uint16 image"
    if array.size == 0:
        raise ValueError(f"the image is empty (shape {array.shape})")
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{expected}; got an array of {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{expected}; got complex numbers")
    low, high = float(array.min()), float(array.max())
    if array.dtype == np.uint16 and high > 255:
        return (array >> 8).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"{expected}; this {array.dtype} image holds NaN or infinite values")
        if low >= 0 and high <= 1:
            return np.round(array * 255.0).astype(np.uint8)
        if low >= 0 and high <= 255:
            return np.round(array).astype(np.uint8)
        raise ValueError(f"{expected}; this {array.dtype} image ranges from {low:g} to {high:g}")
    if low >= 0 and high <= 255:
        return array.astype(np.uint8)
    raise ValueError(f"{expected}; this {array.dtype} image ranges from {low:g} to {high:g}")


def as_bgr(image, color: str = "bgr") -> np.ndarray:
    """A 3-channel uint8 BGR image from an image in BGR (OpenCV's order) or RGB, any channel count."""
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb', not {color!r}")
    image = to_three_channels(as_uint8(image))
    return np.ascontiguousarray(image[:, :, ::-1] if color == "rgb" else image)


def check_min_face_size(size) -> int:
    if isinstance(size, bool) or not float(size).is_integer() or int(size) < SMALLEST_FACE:
        raise ValueError(f"the smallest face size must be a whole number of at least {SMALLEST_FACE} pixels, "
                         f"not {size}")
    return int(size)


class FaceDetector:
    """What every detector shares; subclasses implement `_run(bgr, min_face)`.

    Args:
        min_face_size: smallest face, in pixels of the input image (at least SMALLEST_FACE).
        pad_retry: when nothing is found in an image shaped like a face crop (sides at most
            CROP_ASPECT apart), look again in a copy with a black border of this fraction of its
            longer side. Tight face crops (UTKFace, AFAD chips) are otherwise missed. 0 disables.
        max_side: detect on a copy whose longer side is at most this (0: always full size).
        check_orientation: look again, in turned copies, at faces whose landmarks cannot be upright
            or whose score is low (detect.orientation); faces still implausible carry `problem`.
    """

    name = "base"

    def __init__(self, min_face_size: int = MIN_FACE_SIZE, pad_retry: float = 0.25, max_side: int = MAX_SIDE,
                 check_orientation: bool = True):
        self.min_face_size = check_min_face_size(min_face_size)
        self.pad_retry = float(pad_retry)
        self.max_side = int(max_side)
        self.check_orientation = bool(check_orientation)
        # one image at a time through the network: OpenCV's YuNet keeps the input size of the image
        # it is given, and threads sharing it got each other's faces, OpenCV errors or a crash
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray, color: str = "bgr") -> list[Detection]:
        """Faces in an image given as BGR (OpenCV's order, the default) or RGB.

        Returns detections sorted by decreasing area; coordinates refer to the image as given.
        """
        import cv2

        bgr = as_bgr(image, color)
        height, width = bgr.shape[:2]
        scale = min(1.0, self.max_side / max(height, width)) if self.max_side > 0 else 1.0
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        min_face = self.min_face_size * scale
        found = self._run(bgr, min_face)
        if not found and self.pad_retry > 0 and max(height, width) <= CROP_ASPECT * min(height, width):
            pad = int(round(self.pad_retry * max(bgr.shape[:2])))
            padded = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            found = self._run(padded, min_face)
            for det in found:
                det.box -= pad
                det.landmarks -= pad
        if self.check_orientation:
            found = drop_turned_duplicates([check_orientation(self._run, bgr, det, min_face) for det in found])
        for det in found:
            det.box /= scale
            det.landmarks /= scale
        return sorted(found, key=lambda d: d.area, reverse=True)

    def _run(self, bgr: np.ndarray, min_face: float) -> list[Detection]:
        raise NotImplementedError


class MTCNNDetector(FaceDetector):
    """MTCNN from the PyPI `mtcnn` package (its bundled weights, so it works offline).

    thresholds: confidence thresholds of the P-, R- and O-networks.
    """

    name = "mtcnn"

    def __init__(self, min_face_size: int = MIN_FACE_SIZE, thresholds=(0.6, 0.7, 0.8), pad_retry: float = 0.25,
                 max_side: int = MAX_SIDE, check_orientation: bool = True):
        super().__init__(min_face_size, pad_retry, max_side, check_orientation)
        from detect.quiet import start_tensorflow

        try:  # kept lazy so that light tools stay light
            start_tensorflow()
            from mtcnn import MTCNN

            self._mtcnn = MTCNN()
        except ImportError as exc:
            raise DetectorError(f"the MTCNN detector needs the packages of requirements.txt (mtcnn, tensorflow): "
                                f"{exc}; the YuNet detector needs neither") from exc
        self.thresholds = tuple(float(t) for t in thresholds)

    def _run(self, bgr: np.ndarray, min_face: float) -> list[Detection]:
        if min(bgr.shape[:2]) < 12:
            return []
        with self._lock:
            rows = self._mtcnn.detect_faces(
                np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.float32),
                box_format="xyxy", output_type="numpy", fit_to_image=False,
                # below 12 px the pyramid would enlarge the image (MTCNN's smallest window is 12 px)
                min_face_size=max(12, int(round(min_face))), threshold_pnet=self.thresholds[0],
                threshold_rnet=self.thresholds[1], threshold_onet=self.thresholds[2],
            )
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, 16)
        # Row layout of mtcnn 1.x: image id, x1, y1, x2, y2, score, 5 landmark x, 5 landmark y.
        return [
            Detection(box=row[1:5].copy(), score=float(row[5]),
                      landmarks=np.stack([row[6:11], row[11:16]], axis=1).copy())
            for row in rows
        ]


_QUIET_OPENCV = threading.Lock()


class YuNetDetector(FaceDetector):
    """YuNet (libfacedetection, OpenCV's model zoo, MIT licence) run by `cv2.FaceDetectorYN`.

    score_threshold 0.6 finds as many faces as MTCNN (OpenCV's default 0.9 misses about 1 in 10
    in-the-wild faces); nms_threshold merges overlapping boxes. Its boxes are used as they are:
    on photos with context they agree with MTCNN's, on tight chips (UTKFace) they start lower on
    the forehead, and no fixed mapping fits both (model/README.md, "Two detectors"). A model is best run
    with the detector that prepared its training data (its card says which).
    """

    name = "yunet"

    def __init__(self, min_face_size: int = MIN_FACE_SIZE, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, pad_retry: float = 0.25, max_side: int = MAX_SIDE,
                 model_path=YUNET_MODEL, check_orientation: bool = True):
        import cv2

        super().__init__(min_face_size, pad_retry, max_side, check_orientation)
        model_path = Path(model_path)
        if not model_path.is_file():
            raise DetectorError(f"YuNet model {model_path} not found (it ships in model/ of this project)")
        self.score_threshold = float(score_threshold)
        with _QUIET_OPENCV:  # the log level is the process's: threads making detectors at once take turns
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV 5 warns of its DNN engine
            try:
                self._yunet = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), self.score_threshold,
                                                        float(nms_threshold), 5000)
            except cv2.error as exc:
                raise DetectorError(f"YuNet model {model_path} is damaged or not an ONNX model file") from exc
            finally:
                cv2.utils.logging.setLogLevel(level)

    def _run(self, bgr: np.ndarray, min_face: float) -> list[Detection]:
        if min(bgr.shape[:2]) < 10:
            return []
        with self._lock:
            self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = self._yunet.detect(bgr)
        if rows is None:
            return []
        # Row layout: x, y, w, h, then (x, y) of right eye... as seen: image-left eye, image-right
        # eye, nose, image-left mouth corner, image-right mouth corner; then the score.
        found = []
        for row in np.asarray(rows, dtype=np.float32):
            x, y, w, h = row[:4]
            if max(w, h) < min_face:
                continue
            found.append(Detection(box=np.array([x, y, x + w, y + h], np.float32), score=float(row[14]),
                                   landmarks=row[4:14].reshape(5, 2).copy()))
        return found


def check_detector(name: str) -> None:
    """DetectorError if the detector `name` cannot be built here, without building MTCNN (which
    would load TensorFlow): for worker processes, which cannot report a failure themselves."""
    import importlib.util

    if name == "mtcnn":
        def absent(module):
            try:
                return importlib.util.find_spec(module) is None
            except ValueError:  # in sys.modules without a spec: blocked on purpose
                return True

        missing = [m for m in ("mtcnn", "tensorflow") if absent(m)]
        if missing:
            raise DetectorError(f"the MTCNN detector needs the packages of requirements.txt (missing: "
                                f"{', '.join(missing)}); the YuNet detector needs neither")
    else:
        make_detector(name)


def make_detector(name: str = DEFAULT_DETECTOR, **options) -> FaceDetector:
    """A detector by name: 'yunet' (fast, OpenCV only) or 'mtcnn' (the original's, TensorFlow)."""
    if name == "yunet":
        return YuNetDetector(**options)
    if name == "mtcnn":
        return MTCNNDetector(**options)
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
