"""Alignment of a face to the 256x256 chip from its 5 landmarks (a similarity transform)."""
from __future__ import annotations

import cv2
import numpy as np

CHIP_SIZE = 256
# Where the midpoint between the eyes lands on the chip: (0.5, 0.4) of its size.
EYE_MIDPOINT = (0.5 * CHIP_SIZE, 0.4 * CHIP_SIZE)
# Mean-face template (fractions), placed with padding 0.4: (0.4 + t) / 1.8 * CHIP_SIZE.
_TEMPLATE = np.array([[0.2242, 0.2119], [0.7561, 0.2119], [0.4901, 0.6281],
                      [0.2541, 0.7802], [0.7261, 0.7802]])
TEMPLATE_POINTS = ((0.4 + _TEMPLATE) / 1.8 * CHIP_SIZE).astype(np.float64)


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray:
    """2x3 matrix of the rotation + uniform scale + shift that aligns a face.

    The rotation makes the eye line horizontal, the scale is the least-squares fit of the 5 points
    to the template under that rotation, and the shift puts the eye midpoint at EYE_MIDPOINT.
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye = pts[0], pts[1]
    dx, dy = right_eye - left_eye
    angle = np.arctan2(dy, dx)
    cos, sin = np.cos(-angle), np.sin(-angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    src = (pts - pts.mean(axis=0)) @ rotation.T
    dst = TEMPLATE_POINTS - TEMPLATE_POINTS.mean(axis=0)
    denom = float((src ** 2).sum())
    if not np.isfinite(denom) or denom <= 1e-9:
        raise ValueError("degenerate landmarks: cannot align this face")
    scale = float((src * dst).sum()) / denom
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("degenerate landmarks: cannot align this face")
    linear = scale * rotation
    eye_mid = (left_eye + right_eye) / 2.0
    shift = np.array(EYE_MIDPOINT) - linear @ eye_mid
    return np.hstack([linear, shift[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face to a CHIP_SIZE x CHIP_SIZE chip (bilinear, black border).

    Returns the chip and the 2x3 matrix that maps image coordinates onto it, so the box and the
    landmarks can be carried to the chip without a second detector pass.
    """
    matrix = alignment_matrix(landmarks)
    chip = cv2.warpAffine(image, matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return chip, matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def transform_box(box: np.ndarray, matrix: np.ndarray, quarter_turned: bool = False) -> np.ndarray:
    """Carry a detector box onto the chip: its centre is mapped, its sides are scaled.

    The face is upright on the chip, so an upright box of the scaled size is what a detector run
    on the chip would return (the original ran MTCNN a second time to get it). A face found turned
    by 90 or 270 degrees (quarter_turned) has its box's width and height the other way round.
    """
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    cx, cy = transform_points([[(x1 + x2) / 2, (y1 + y2) / 2]], matrix)[0]
    width, height = (y2 - y1, x2 - x1) if quarter_turned else (x2 - x1, y2 - y1)
    half_w, half_h = scale * width / 2, scale * height / 2
    return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dtype=np.float32)
