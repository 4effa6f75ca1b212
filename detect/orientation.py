"""Faces that are not upright: landmarks that cannot belong to an upright face, and a second look
at a face in rotated copies of its surroundings.

A detector shown an upside-down or sideways face may still return a box with five landmarks: the
mouth above the eyes, the eyes one above the other, or (YuNet) an upright-looking pattern of a
smaller face with a lower score. Aligned from those points, the chip is not a face the model knows,
and its answer is confidently wrong (an upside-down portrait of a woman in her twenties was called
95.8 years old). `check_orientation` looks again at such faces turned by 90, 180 and 270 degrees,
and keeps the view in which an upright face is found with a higher score.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

MAX_ROLL = 60.0          # degrees; more is a photo on its side or upside down, not a tilted head
MIN_MOUTH_DROP = 0.4     # mouth below the eye line by at least this many eye distances (template: 1.07)
MAX_NOSE_OFFSET = 0.6    # nose at most this many eye distances beside the eye midpoint (else a profile)
CHECK_BELOW_SCORE = 0.9  # faces scored lower get the rotated second look even when their points look upright
TURNED_MARGIN = 0.05     # a turned view replaces a plausible face only with a score this much higher
TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def landmark_problem(landmarks) -> str | None:
    """Why five landmarks (LANDMARK_NAMES order) cannot be an upright face, or None if they can."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    if not np.all(np.isfinite(pts)):
        return "landmarks are not finite"
    eye_vector = pts[1] - pts[0]
    eye_distance = float(np.hypot(*eye_vector))
    if eye_distance < 1e-6:
        return "both eyes at one point"
    roll = math.degrees(math.atan2(eye_vector[1], eye_vector[0]))
    if abs(roll) > MAX_ROLL:
        return f"eye line turned {roll:.0f} degrees (a face on its side or upside down)"
    # coordinates in the face's own frame: x along the eye line, y across it, in eye distances
    ux = eye_vector / eye_distance
    uy = np.array([-ux[1], ux[0]])
    eye_mid = (pts[0] + pts[1]) / 2
    mouth_drop = float((((pts[3] + pts[4]) / 2) - eye_mid) @ uy) / eye_distance
    if mouth_drop < MIN_MOUTH_DROP:
        return f"mouth not below the eyes ({mouth_drop:.2f} eye distances; an upside-down face?)"
    nose_offset = float((pts[2] - eye_mid) @ ux) / eye_distance
    if abs(nose_offset) > MAX_NOSE_OFFSET:
        return f"nose beside the eyes ({nose_offset:+.2f} eye distances; a face in profile)"
    return None


def _region(bgr: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """A square around a face box, twice its longer side, black where it leaves the image; and its
    top-left corner in image pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = int(round(2 * max(x2 - x1, y2 - y1, 1.0)))
    left, top = int(round((x1 + x2) / 2 - side / 2)), int(round((y1 + y2) / 2 - side / 2))
    region = np.zeros((side, side, 3), np.uint8)
    height, width = bgr.shape[:2]
    ix1, iy1, ix2, iy2 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    if ix2 > ix1 and iy2 > iy1:
        region[iy1 - top:iy2 - top, ix1 - left:ix2 - left] = bgr[iy1:iy2, ix1:ix2]
    return region, np.array([left, top], np.float32)


def unturn_points(points: np.ndarray, degrees: int, size: int) -> np.ndarray:
    """Points of a size x size square turned clockwise by `degrees` (cv2.rotate), back in the square
    before the turn."""
    u, v = points[..., 0], points[..., 1]
    if degrees == 90:    # (x, y) -> (size - y, x)
        x, y = v, size - u
    elif degrees == 180:  # (x, y) -> (size - x, size - y)
        x, y = size - u, size - v
    elif degrees == 270:  # (x, y) -> (y, size - x)
        x, y = size - v, u
    else:
        raise ValueError(f"turns are 90, 180 or 270 degrees, not {degrees}")
    return np.stack([x, y], axis=-1).astype(np.float32)


def check_orientation(run, bgr: np.ndarray, detection, min_face: float):
    """The detection as it is, or, if the face shows upright with a higher score in a turned copy
    of its surroundings, that view mapped back (box: the enclosing box of the turned box's corners;
    landmarks keep their meaning, so alignment turns the face upright; `rotation` says how far).
    A face that stays implausible keeps its `problem`.

    run(bgr, min_face) -> detections is the detector's own single pass.
    """
    problem = landmark_problem(detection.landmarks)
    if problem is None and detection.score >= CHECK_BELOW_SCORE:
        return detection
    region, corner = _region(bgr, detection.box)
    size = region.shape[0]
    x1, y1, x2, y2 = detection.box
    best, best_score = None, detection.score + TURNED_MARGIN if problem is None else -1.0
    for degrees, code in TURNS.items():
        for found in run(cv2.rotate(region, code), min_face):
            centre = unturn_points(((found.box[:2] + found.box[2:]) / 2)[None], degrees, size)[0] + corner
            on_this_face = x1 <= centre[0] <= x2 and y1 <= centre[1] <= y2  # not a neighbour in the region
            if on_this_face and found.score > best_score and landmark_problem(found.landmarks) is None:
                best, best_score = (degrees, found), found.score
    if best is None:
        detection.problem = problem
        return detection
    degrees, found = best
    x1, y1, x2, y2 = found.box
    corners = unturn_points(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32), degrees, size) + corner
    detection.box = np.concatenate([corners.min(axis=0), corners.max(axis=0)]).astype(np.float32)
    detection.landmarks = unturn_points(found.landmarks, degrees, size) + corner
    detection.score, detection.rotation, detection.problem = found.score, degrees, None
    return detection


def box_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def drop_turned_duplicates(detections: list, min_iou: float = 0.3) -> list:
    """A turned view can land on a face found otherwise too (a spurious low-score box next to a real
    face, seen upside down, looks like a face; an upside-down face may also be found as a smaller
    upright pattern): of two overlapping detections of which one was turned, keep the higher score."""
    def beaten(d):
        return any(o is not d and (d.rotation or o.rotation) and o.score > d.score and box_iou(o.box, d.box) > min_iou
                   for o in detections)

    return [d for d in detections if not beaten(d)]
