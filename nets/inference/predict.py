"""Age (and gender) of every face in an image, from any model file this project writes.

    from nets.inference.predict import AgeEstimator
    estimator = AgeEstimator()            # the shipped model, YuNet; or AgeEstimator("x.keras", detector="mtcnn")
    for face in estimator.predict(cv2.imread("photo.jpg")):
        print(face.box, face.age, face.age_low, face.age_high, face.gender, face.gender_prob)

With the model's NAME.calibration.json beside it (nets/calibrate.py), every age comes with a range that
holds the true age for 80 % of faces like the validation faces (AgeEstimator(level=0.9): 90 %); without
one, age_low and age_high are None and estimator.calibration_note says why.

Faces go through exactly the preprocessing of training (detect.prepare_faces) and are batched
through the model. With a .tflite model and YuNet nothing here imports TensorFlow or Keras.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from detect import DEFAULT_DETECTOR, FaceDetector, PreparedFace, make_detector, prepare_faces
from detect.detector import MAX_SIDE, MIN_FACE_SIZE
from nets.inference.ranges import calibration_for, range_text
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
    age_low: float | None = None    # the range that holds the true age at age_level (a calibrated model)
    age_high: float | None = None
    age_level: float | None = None  # e.g. 0.8: the range holds the true age of 80 % of faces like the validation faces
    gender_uncertain: bool | None = None  # gender_prob below the model's stated threshold (a calibrated model)

    def to_json(self, **extra) -> dict:
        record = {**extra, "box": [round(v, 1) for v in self.box], "score": round(self.score, 4),
                  "age": round(self.age, 2)}
        if self.age_low is not None:
            record.update(age_low=round(self.age_low, 1), age_high=round(self.age_high, 1), age_level=self.age_level)
        record.update(gender=self.gender, gender_prob=None if self.gender_prob is None else round(self.gender_prob, 4))
        if self.gender_uncertain is not None:
            record["gender_uncertain"] = self.gender_uncertain
        record.update(landmarks=[[round(x, 1), round(y, 1)] for x, y in self.landmarks],
                      distribution=[round(p, 4) for p in self.distribution])
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
    level: the coverage of the age ranges, one the model was calibrated at (default: the calibration's,
        0.8); another is a CalibrationError (a ValueError) that names the calibrated ones.

    One estimator may be shared by threads (a web server's, a thread pool's): each thread gets its own
    YuNet detector and LiteRT interpreter, made on its first call (they keep per-image state, and
    these copies let two threads use both cores: 1.3-1.75 times the photos per second of one lock with
    2-4 threads and a free core, `python nets/benchmark.py threads`);
    a Keras model, an MTCNN detector or objects passed in are shared, one call at a time.
    """

    def __init__(self, model_path=DEFAULT_MODEL, detector: str | FaceDetector = DEFAULT_DETECTOR,
                 min_face_size: int = MIN_FACE_SIZE, max_side: int = MAX_SIDE, level: float | None = None):
        if hasattr(model_path, "predict_crops"):
            self.model_path, self.runner = None, model_path
        else:
            self.model_path, self.runner = os.fspath(model_path), load_model_file(model_path)
        self.has_gender = "gender" in self.runner.outputs
        # the model file's own calibration (never another model's), or None and the sentence that says why
        self.calibration, self.calibration_note = calibration_for(self.model_path) if self.model_path else (None, None)
        self.level = None
        if self.calibration is not None:
            self.level = self.calibration.default_level if level is None else self.calibration.check_level(level)
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
        calibrated = self.calibrate_answers(out)
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
                gender_prob=gender_prob, warning=face.problem, **{k: v[i] for k, v in calibrated.items()}))
        return results

    def calibrate_answers(self, out: dict) -> dict:
        """The calibration's share of a batch's answers ({FacePrediction field: a value per face}); the
        gender probabilities in `out` are replaced by calibrated ones where the model has a temperature."""
        if self.calibration is None:
            return {}
        if self.has_gender and self.calibration.gender_temperature != 1.0:
            male = self.calibration.male_probabilities(out["gender"][:, 1])
            out["gender"] = np.stack([1.0 - male, male], axis=1)
        return self._calibrated_fields(out["age"], out["W1"], out["gender"].max(axis=1) if self.has_gender else None)

    def _calibrated_fields(self, ages, distributions, gender_probs=None) -> dict:
        """{FacePrediction field: a value per face}: the age range at self.level, and gender_uncertain
        where there are gender probabilities and the calibration states a threshold."""
        low, high = self.calibration.age_ranges(ages, distributions, self.level)
        fields = {"age_low": low.tolist(), "age_high": high.tolist(), "age_level": [self.level] * len(low)}
        threshold = self.calibration.gender_uncertain_below
        if gender_probs is not None and threshold is not None:
            fields["gender_uncertain"] = (np.asarray(gender_probs) < threshold).tolist()
        return fields

    def with_range(self, prediction: FacePrediction) -> FacePrediction:
        """The prediction with its age range and gender uncertainty worked out anew from its age, W1 and
        gender_prob (such as a video track's averages of them); with none where there is no calibration."""
        fields = {"age_low": None, "age_high": None, "age_level": None, "gender_uncertain": None}
        if self.calibration is not None:
            gender_probs = None if prediction.gender_prob is None else [prediction.gender_prob]
            fields.update({k: v[0] for k, v in self._calibrated_fields(
                [prediction.age], [prediction.distribution], gender_probs).items()})
        return replace(prediction, **fields)

    def predict(self, image: np.ndarray, color: str = "bgr") -> list[FacePrediction]:
        """One record per face found in a uint8 BGR (default) or RGB image, largest first."""
        return self.predict_prepared(prepare_faces(image, self._parts()[0], color=color))


def draw_predictions(image: np.ndarray, predictions: list[FacePrediction]) -> np.ndarray:
    """A copy of a BGR image with each face's box and "age (low-high) F/M" drawn on it."""
    import cv2

    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for p in predictions:
        x1, y1, x2, y2 = (int(round(v)) for v in p.box)
        color = (60, 60, 230) if p.gender == "F" else (230, 120, 40) if p.gender == "M" else (60, 200, 60)
        if p.warning:  # a doubtful answer: grey, with a question mark
            color = (128, 128, 128)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = age_label(p) + (f" {p.gender}" if p.gender else "") + (" ?" if p.warning else "")
        # text grows with the face and with the photo (a small face in a large photo, shown fitted to a
        # screen, still gets a readable label), its strokes with the text
        scale = max(0.5, (x2 - x1) / 160, max(image.shape[:2]) / 1400)
        text_thickness = max(1, round(scale * 1.6))
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, text_thickness)
        top = max(0, y1 - th - base - 4)
        left = max(0, min(x1, canvas.shape[1] - tw - 6))  # a face at the right edge keeps its whole label
        cv2.rectangle(canvas, (left, top), (left + tw + 6, top + th + base + 4), color, -1)
        cv2.putText(canvas, label, (left + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), text_thickness, cv2.LINE_AA)
    return canvas


def age_label(p: FacePrediction) -> str:
    """"34 (28-41)": the age and, from a calibrated model, its range rounded outwards; "34" without."""
    if p.age_low is None:
        return f"{p.age:.0f}"
    return f"{p.age:.0f} ({range_text(p.age_low, p.age_high)})"
