"""Head pose (yaw, pitch, roll in degrees) from 4 landmarks with cv2.solvePnP. Stored, not trained on."""
from __future__ import annotations

import cv2
import numpy as np

# A generic head in millimetres (x right, y down, z away from the camera): eye midpoint, nose
# tip, mouth left, mouth right (left/right as seen in the image).
_MODEL_POINTS = np.array([[0.0, -170.0, -135.0], [0.0, 0.0, 0.0],
                          [-150.0, 150.0, -125.0], [150.0, 150.0, -125.0]])


def head_pose(landmarks: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """(yaw, pitch, roll) in degrees; NaNs where solvePnP fails."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    image_points = np.array([(pts[0] + pts[1]) / 2, pts[2], pts[3], pts[4]])
    height, width = image_shape[:2]
    focal = float(max(height, width))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    try:
        ok, rvec, _ = cv2.solvePnP(_MODEL_POINTS, image_points, camera, np.zeros(4),
                                   flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        ok = False
    if not ok:
        return np.full(3, np.nan, dtype=np.float32)
    rotation, _ = cv2.Rodrigues(rvec)
    pitch, yaw, roll = cv2.RQDecomp3x3(rotation)[0]
    return np.array([yaw, pitch, roll], dtype=np.float32)
