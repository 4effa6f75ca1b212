"""The triple box (the paper's "context"): three nested crops around a face, each 64x64x3."""
from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 64


def triple_boxes(box: np.ndarray, nose: np.ndarray) -> np.ndarray:
    """Outer, middle and inner boxes (x1, y1, x2, y2) from a face box and its nose point.

    With w, h the box size, m = |w - h| and t = nose_y - box_y1:
    outer = the box grown by m on every side; middle = square of side 2t centred on the nose;
    inner = square of side w centred on the nose.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    nx, ny = (float(v) for v in nose)
    w, h = x2 - x1, y2 - y1
    m = abs(w - h)
    t = abs(ny - y1)
    outer = [x1 - m, y1 - m, x2 + m, y2 + m]
    middle = [nx - t, ny - t, nx + t, ny + t]
    inner = [nx - w / 2, ny - w / 2, nx + w / 2, ny + w / 2]
    return np.array([outer, middle, inner], dtype=np.float32)


def crop_box(image: np.ndarray, box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Cut box out of image, black where it runs past the border, resized to size x size (bilinear).

    Never empty and never wrapped: a box off the image gives a black crop, a degenerate box is
    widened to one pixel.
    """
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    height, width = image.shape[:2]
    canvas = np.zeros((y2 - y1, x2 - x1) + image.shape[2:], dtype=image.dtype)
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if ix2 > ix1 and iy2 > iy1:
        canvas[iy1 - y1:iy2 - y1, ix1 - x1:ix2 - x1] = image[iy1:iy2, ix1:ix2]
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_LINEAR).reshape(
        (size, size) + image.shape[2:])


def crop_triple(chip: np.ndarray, boxes: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The three crops of a chip, stacked as (3, size, size, 3) uint8 in order outer, middle, inner."""
    return np.stack([crop_box(chip, b, size) for b in np.asarray(boxes).reshape(3, 4)])
