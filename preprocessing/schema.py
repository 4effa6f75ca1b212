"""The feather schema: one row per face, plain columns only (no pickled objects).

| column | type | meaning |
| --- | --- | --- |
| source_file | string | image path relative to the input (-i) |
| age | float32 | years |
| gender | int8 | 0 female, 1 male, -1 unknown |
| image | binary | the aligned 256x256 BGR chip, JPEG bytes |
| score | float32 | detector confidence |
| faces | int8 | how many faces the detector found in the image |
| box_x1 .. box_y2 | float32 | face box on the chip |
| <landmark>_x, <landmark>_y | float32 | 5 landmarks on the chip (left_eye, right_eye, nose, mouth_left, mouth_right) |
| outer_x1 .. inner_y2 | float32 | the triple box on the chip: outer, middle, inner |
| src_x1 .. src_y2 | float32 | face box in the original image |
| yaw, pitch, roll | float32 | head pose in degrees (solvePnP; NaN where it failed) |
| detector | string | which detector found the face (yunet, mtcnn); files written before it was recorded were all mtcnn |
"""
from __future__ import annotations

import numpy as np

from detect import LANDMARK_NAMES, PreparedFace

BOX_COLUMNS = ["box_x1", "box_y1", "box_x2", "box_y2"]
LANDMARK_COLUMNS = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]
TRIPLE_NAMES = ("outer", "middle", "inner")
TRIPLE_COLUMNS = [f"{name}_{c}" for name in TRIPLE_NAMES for c in ("x1", "y1", "x2", "y2")]
SOURCE_BOX_COLUMNS = ["src_x1", "src_y1", "src_x2", "src_y2"]
POSE_COLUMNS = ["yaw", "pitch", "roll"]
FLOAT_COLUMNS = ["age", "score"] + BOX_COLUMNS + LANDMARK_COLUMNS + TRIPLE_COLUMNS + \
    SOURCE_BOX_COLUMNS + POSE_COLUMNS
COLUMNS = ["source_file", "age", "gender", "image", "score", "faces"] + FLOAT_COLUMNS[2:] + ["detector"]
# Chunks written before the detector was recorded lack the column; MTCNN was the only detector then.
DEFAULTS = {"detector": "mtcnn"}


def face_to_row(face: PreparedFace, source_file: str, age: float, gender: int, faces: int, detector: str) -> dict:
    values = np.concatenate([face.chip_box, face.chip_landmarks.reshape(-1), face.triple.reshape(-1),
                             face.box, face.pose]).astype(np.float32)
    row = dict(zip(BOX_COLUMNS + LANDMARK_COLUMNS + TRIPLE_COLUMNS + SOURCE_BOX_COLUMNS + POSE_COLUMNS,
                   values.tolist()))
    row.update(source_file=source_file, age=float(age), gender=int(gender), image=face.chip_jpeg,
               score=float(face.score), faces=int(faces), detector=detector)
    return row


def rows_to_frame(rows: list[dict]):
    import pandas as pd

    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.astype({c: "float32" for c in FLOAT_COLUMNS})
    return frame.astype({"gender": "int8", "faces": "int8", "source_file": "str", "detector": "str"})


def triple_from_frame(frame) -> np.ndarray:
    """(N, 3, 4) float32 triple boxes of a frame's rows."""
    return frame[TRIPLE_COLUMNS].to_numpy(np.float32).reshape(-1, 3, 4)
