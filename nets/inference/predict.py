"""Age (and gender) of every face in an image, from any model file this project writes.

    from nets.inference.predict import AgeEstimator
    estimator = AgeEstimator()            # the shipped model, YuNet; or AgeEstimator("x.keras", detector="mtcnn")
    for face in estimator.predict(cv2.imread("photo.jpg")):
        print(face.box, face.age, face.gender, face.gender_prob)

Faces go through exactly the preprocessing of training (detect.prepare_faces) and are batched
through the model. With a .tflite model and YuNet nothing here imports TensorFlow or Keras.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detect import DEFAULT_DETECTOR, FaceDetector, PreparedFace, make_detector, prepare_faces
from detect.detector import MAX_SIDE, MIN_FACE_SIZE
from nets.network.contract import ModelFileError

REPO_ROOT = Path(__file__).resolve().parents[2]
# The fastest export of the shipped age + gender model that passes the parity check (model/README.md, Speed).
DEFAULT_MODEL = REPO_ROOT / "model" / "c3ae_utk_asia_age_gender.float32.tflite"
GENDER_NAMES = ("F", "M")  # index 0 female, 1 male


@dataclass
class FacePrediction:
    box: list              # x1, y1, x2, y2 in the image
    score: float           # detector confidence
    landmarks: list        # 5 x [x, y]: left eye, right eye, nose, mouth left, mouth right
    age: float
    distribution: list     # W1, the two-point distribution over the age bins
    gender: str | None     # "F" or "M"; None for an age-only model
    gender_prob: float | None  # probability of that gender
    track: int | None = None   # video: the person's number, when answers are averaged over frames
    warning: str | None = None  # why this face's answer is doubtful (landmarks not of an upright face)

    def to_json(self, **extra) -> dict:
        record = {**extra, "box": [round(v, 1) for v in self.box], "score": round(self.score, 4),
                  "age": round(self.age, 2), "gender": self.gender,
                  "gender_prob": None if self.gender_prob is None else round(self.gender_prob, 4),
                  "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
                  "distribution": [round(p, 4) for p in self.distribution]}
        if self.track is not None:
            record["track"] = self.track
        if self.warning is not None:
            record["warning"] = self.warning
        return record


class KerasRunner:
    """A .keras file of this project, or a C3AE Keras model already in memory."""

    def __init__(self, path_or_model):
        try:
            from detect.quiet import start_tensorflow

            start_tensorflow()  # its start-up notices filtered, as in the training scripts
            from nets.network.model import as_float32, describe, load_c3ae
        except ImportError as exc:
            raise ModelFileError(f"running {path_or_model} needs TensorFlow and Keras (pip install -r "
                                 f"requirements.txt); its .tflite exports run without them ({exc})") from exc

        loaded = path_or_model if hasattr(path_or_model, "predict_on_batch") else load_c3ae(path_or_model)
        self.model = as_float32(loaded)
        self.outputs = describe(self.model)["outputs"]
        self._lock = threading.Lock()

    def predict_crops(self, crops: np.ndarray) -> dict:
        from nets.training.data import as_inputs

        with self._lock:  # one call at a time, as with LiteRT
            out = self.model.predict_on_batch(as_inputs(crops))
        return {k: np.asarray(v) for k, v in out.items()}


def load_model_file(path):
    """A runner for a .keras or .tflite C3AE file: .predict_crops(crops) and .outputs."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.suffix == ".keras":
        return KerasRunner(path)
    if path.suffix == ".tflite":
        from nets.inference.tflite import TFLiteModel

        return TFLiteModel(path)
    raise ModelFileError(f"{path} is neither a .keras nor a .tflite model file")


class AgeEstimator:
    """Faces and their age (and gender) in images.

    model_path: a .keras or .tflite file of this project (default: the shipped age + gender model),
        or a runner such as KerasRunner(model) for a model in memory.
    detector: "yunet" (default, fast), "mtcnn" (the original's), or a detect.FaceDetector.
    min_face_size, max_side: the smallest face, in pixels; photos larger than max_side pixels are
        detected on a copy of that size (for a detector given by name).

    One estimator may be shared by threads (a web server's, a thread pool's): each thread gets its own
    YuNet detector and LiteRT interpreter, made on its first call (they keep per-image state, and
    these copies let two threads use both cores: 1.3-1.75 times the photos per second of one lock with
    2-4 threads and a free core, `python nets/benchmark.py threads`);
    a Keras model, an MTCNN detector or objects passed in are shared, one call at a time.
    """

    def __init__(self, model_path=DEFAULT_MODEL, detector: str | FaceDetector = DEFAULT_DETECTOR,
                 min_face_size: int = MIN_FACE_SIZE, max_side: int = MAX_SIDE):
        if hasattr(model_path, "predict_crops"):
            self.model_path, self.runner = None, model_path
        else:
            self.model_path, self.runner = os.fspath(model_path), load_model_file(model_path)
        self.has_gender = "gender" in self.runner.outputs
        if isinstance(detector, str):
            self.detector = make_detector(detector, min_face_size=min_face_size, max_side=max_side)
            options = dict(min_face_size=min_face_size, max_side=max_side)
            self._new_detector = (lambda: make_detector(detector, **options)) if detector == "yunet" else None
        else:
            self.detector, self._new_detector = detector, None
        tflite = self.model_path is not None and Path(self.model_path).suffix == ".tflite"
        self._new_runner = (lambda: load_model_file(self.model_path)) if tflite else None
        self._own = threading.local()  # this thread's detector and runner
        self._own.detector, self._own.runner = self.detector, self.runner

    def _parts(self):
        """This thread's detector and model runner, made on its first call where they can be."""
        own = self._own
        if not hasattr(own, "runner"):
            own.detector = self._new_detector() if self._new_detector else self.detector
            own.runner = self._new_runner() if self._new_runner else self.runner
        return own.detector, own.runner

    def predict_prepared(self, faces: list[PreparedFace]) -> list[FacePrediction]:
        if not faces:
            return []
        out = self._parts()[1].predict_crops(np.stack([f.crops() for f in faces]))
        results = []
        for i, face in enumerate(faces):
            gender = gender_prob = None
            if self.has_gender:
                probs = out["gender"][i]
                k = int(np.argmax(probs))
                gender, gender_prob = GENDER_NAMES[k], float(probs[k])
            results.append(FacePrediction(
                box=face.box.tolist(), score=float(face.score), landmarks=face.landmarks.tolist(),
                age=float(out["age"][i][0]), distribution=out["W1"][i].tolist(), gender=gender,
                gender_prob=gender_prob, warning=face.problem))
        return results

    def predict(self, image: np.ndarray, color: str = "bgr") -> list[FacePrediction]:
        """One record per face found in a uint8 BGR (default) or RGB image, largest first."""
        return self.predict_prepared(prepare_faces(image, self._parts()[0], color=color))


def draw_predictions(image: np.ndarray, predictions: list[FacePrediction]) -> np.ndarray:
    """A copy of a BGR image with each face's box and "age F/M" drawn on it."""
    import cv2

    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for p in predictions:
        x1, y1, x2, y2 = (int(round(v)) for v in p.box)
        color = (60, 60, 230) if p.gender == "F" else (230, 120, 40) if p.gender == "M" else (60, 200, 60)
        if p.warning:  # a doubtful answer: grey, with a question mark
            color = (128, 128, 128)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = f"{p.age:.0f}" + (f" {p.gender}" if p.gender else "") + (" ?" if p.warning else "")
        scale = max(0.5, (x2 - x1) / 160)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y1 - th - base - 4)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 6, top + th + base + 4), color, -1)
        cv2.putText(canvas, label, (x1 + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return canvas
