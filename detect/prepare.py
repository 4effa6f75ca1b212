"""From an image to prepared faces: detect, align, map box and landmarks, triple box, crops.

`prepare_faces` is what data preparation stores and what inference feeds the model. The chip
goes through the same JPEG encoding in both, so a face seen at inference gives exactly the
crops it would give when read back from a feather file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from detect.align import align_face, transform_box, transform_points
from detect.detector import Detection, FaceDetector, as_bgr
from detect.pose import head_pose
from detect.triple_box import crop_triple, triple_boxes

JPEG_QUALITY = 95
# The largest image read or analysed, in pixels: a 50 MP photo (8660x5773) takes about 450 MB end to
# end, while a 30000x30000 PNG of 2.6 MB took 5.5 GB, and a 1.8 KB one that claims 60000x60000 crashed
# the decoder. Files are checked from their header, before anything is decoded.
MAX_PIXELS = 50_000_000


class ImageReadError(ValueError):
    """An input that is missing, empty, too large or not a decodable image. `reason` is what is wrong
    without the file's name or numbers, for batch jobs that count their skips by reason."""

    def __init__(self, path, reason: str, detail: str = ""):
        self.path, self.reason = path, reason
        super().__init__(f"{printable_name(path)}: {reason}{detail}")


def megapixels(pixels: float) -> str:
    return f"{pixels / 1e6:,.0f} MP" if pixels >= 1e7 else f"{pixels / 1e6:.1f} MP"


def too_large(width: int, height: int, max_pixels: int = MAX_PIXELS) -> str | None:
    """The size of an image that is over max_pixels, as said to people ("7072x7071 = 50,006,112 pixels":
    exact, since "50 MP" over a limit of 50 MP reads as no reason at all), or None."""
    return None if width * height <= max_pixels else f"{width}x{height} = {width * height:,} pixels"


def over_the_limit(max_pixels: int = MAX_PIXELS) -> str:
    return f"too large, over the limit of {megapixels(max_pixels)}"


def header_problem(data: bytes, max_pixels: int = MAX_PIXELS) -> str | None:
    """The size an image file's header claims where it is over max_pixels (read by Pillow without
    decoding the pixels), or None; also None where Pillow does not know the format (the size of
    the decoded image is checked then, and OpenCV's own limit of about 1,000 MP applies)."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return too_large(*image.size, max_pixels)
        except Image.DecompressionBombError as exc:  # Pillow's own refusal, from about 179 MP on
            claimed = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow says "Image size (N pixels) exceeds ..."
            return f"its header claims {int(claimed.group(1)):,} pixels" if claimed else "its header claims too many pixels"
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):  # not Pillow's, or a damaged header
            return None


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


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as 3-channel uint8 BGR, or raise ImageReadError with the reason."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(path, "no such file")
    if os.path.isdir(path):
        raise ImageReadError(path, "is a folder, not an image")
    if not os.path.isfile(path):  # a pipe or a device would block or never end
        raise ImageReadError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:  # no permission to read it, an I/O error
        raise ImageReadError(path, "cannot be read", f" ({(exc.strerror or type(exc).__name__).lower()})") from exc
    return decode_image(data, path, max_pixels)


def decode_image(data, name="image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An encoded image (bytes or a uint8 array) as 3-channel uint8 BGR, its size checked against
    max_pixels before it is decoded; ImageReadError naming `name` otherwise."""
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if data.size == 0:
        raise ImageReadError(name, "empty file (0 bytes)")
    problem = header_problem(data.tobytes(), max_pixels)
    if problem:
        raise ImageReadError(name, over_the_limit(max_pixels), f" ({problem}); shrink it first")
    try:
        # IMREAD_COLOR: 8-bit BGR whatever the file holds (gray, alpha, 16 bit), EXIF orientation applied
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own checks (its size limit, for a format Pillow does not read)
        raise ImageReadError(name, "not a readable image", f" ({str(exc).strip().splitlines()[-1]})") from exc
    if image is None:
        raise ImageReadError(name, "not a readable image")
    problem = too_large(image.shape[1], image.shape[0], max_pixels)
    if problem:  # a format whose header Pillow could not read
        raise ImageReadError(name, over_the_limit(max_pixels), f" ({problem}); shrink it first")
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
    if hasattr(image, "shape") and len(image.shape) >= 2:
        problem = too_large(image.shape[1], image.shape[0])
        if problem:
            raise ValueError(f"the image is {over_the_limit()} ({problem}); shrink it first")
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
