"""Age ranges and calibrated gender probabilities at run time, from a model's NAME.calibration.json.

nets/calibrate.py fits the file on the model's own validation faces (split conformal prediction,
nets/evaluation/calibration.py); this module only applies the stored table, with numpy alone, so the
light install (no TensorFlow, no scikit-learn) gives the same ranges as the full one.

A range at level 0.8 holds the true age for about 80 % of faces like the validation faces: the table
is a half-width per bin of the predicted age, in years or in units of the spread of W1:

    low, high = age - half_width[bin] * scale,  age + half_width[bin] * scale    (clipped to 0..120)

where scale is 1 (method "mondrian") or the standard deviation of W1 in years plus a floor
("mondrian+normalised"). A calibration file is used only by the model files whose SHA-256 it lists.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from nets.network.contract import beside_model, file_sha256  # noqa: F401 (file_sha256: part of this module's API)

CALIBRATION_SUFFIX = ".calibration.json"
CALIBRATION_FORMAT = "c3ae-calibration/1"
AGE_LIMITS = (0.0, 120.0)


class CalibrationError(ValueError):
    """A calibration file that cannot be used: unreadable, of another format, or of another model."""


def calibration_path(model_path) -> Path:
    """NAME.keras or NAME.KIND.tflite (an export) -> NAME.calibration.json beside it."""
    return beside_model(model_path, CALIBRATION_SUFFIX)


def w1_spread(distributions, bin_ages) -> np.ndarray:
    """The standard deviation in years of each W1 distribution over its bins' ages."""
    p = np.asarray(distributions, np.float64)
    ages = np.asarray(bin_ages, np.float64)
    mean = p @ ages
    return np.sqrt(np.maximum(p @ ages ** 2 - mean ** 2, 0.0))


def range_text(low: float, high: float) -> str:
    """"28-41": a range as people read it, its ends rounded outwards (never narrower than measured)."""
    return f"{math.floor(low)}-{math.ceil(high)}"


def level_name(level: float) -> str:
    """0.8 -> "0.8": the key of a level in the file."""
    return f"{float(level):g}"


class Calibration:
    """The stored table of one model: age ranges at its calibrated levels, and gender probabilities."""

    def __init__(self, record: dict, path=None):
        self.path = path
        try:
            age = record["age"]
            self.method = str(age["method"])
            self.bin_edges = np.asarray(age["bin_edges"], np.float64)      # predicted-age bins, inner edges
            self.bin_ages = np.asarray(age["bin_ages"], np.float64)        # ages of W1's bins
            self.spread_floor = float(age.get("spread_floor", 0.0))
            self.normalised = bool(age["normalised"])
            self.half_widths = {level_name(k): np.asarray(v, np.float64) for k, v in age["half_widths"].items()}
            self.default_level = float(age["default_level"])
            gender = record.get("gender") or {}
            self.gender_temperature = float(gender.get("temperature", 1.0))
            self.gender_uncertain_below = gender.get("uncertain_below")
            self.applies_to = {str(k): str(v) for k, v in record["applies_to"].items()}  # file name: SHA-256
            self.model = str(record.get("model", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"it lacks or misstates its age table ({type(exc).__name__}: {exc})") from exc
        bins = len(self.bin_edges) + 1
        tables = list(self.half_widths.values())
        if (not tables or any(t.shape != (bins,) or not np.all(np.isfinite(t)) or np.any(t < 0) for t in tables)
                or level_name(self.default_level) not in self.half_widths or not self.gender_temperature > 0
                or np.any(np.diff(self.bin_edges) <= 0)):
            raise CalibrationError("its age table is inconsistent (bins, levels or half-widths)")
        self.levels = tuple(sorted(float(k) for k in self.half_widths))

    def check_level(self, level: float) -> float:
        """level itself, or CalibrationError saying which levels there are."""
        if level_name(level) not in self.half_widths:
            known = " and ".join(f"{100 * v:g} %" for v in self.levels)
            raise CalibrationError(f"this model is calibrated at {known}, not at {100 * level:g} %; "
                                   f"ask for one of those (--level {' or '.join(level_name(v) for v in self.levels)})")
        return float(level)

    def age_ranges(self, ages, distributions, level: float | None = None):
        """(low, high) arrays for the predicted ages and their W1 distributions."""
        level = self.default_level if level is None else level
        ages = np.asarray(ages, np.float64).ravel()
        half = self.half_widths[level_name(self.check_level(level))][np.searchsorted(self.bin_edges, ages, side="right")]
        if self.normalised:
            half = half * (w1_spread(distributions, self.bin_ages) + self.spread_floor)
        return np.clip(ages - half, *AGE_LIMITS), np.clip(ages + half, *AGE_LIMITS)

    def male_probabilities(self, male) -> np.ndarray:
        """P(male) after the stored temperature (1: the model's own probabilities, unchanged)."""
        return with_temperature(male, self.gender_temperature)


def logit(p) -> np.ndarray:
    """log(p / (1 - p)), with p kept off 0 and 1."""
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log(1 - p)


def with_temperature(male, temperature: float) -> np.ndarray:
    """P(male) = sigmoid(logit(P(male)) / temperature); temperature 1 leaves it as it is."""
    male = np.asarray(male, np.float64)
    if temperature == 1.0:
        return male
    return 1.0 / (1.0 + np.exp(-logit(male) / temperature))


def read_calibration(path) -> Calibration:
    """The calibration file at path, or CalibrationError saying why it cannot be used."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # a folder, unreadable, not UTF-8, not JSON, truncated
        reason = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise CalibrationError(f"it cannot be read ({reason})") from exc
    if not isinstance(record, dict) or record.get("format") != CALIBRATION_FORMAT:
        raise CalibrationError(f"it is not a {CALIBRATION_FORMAT} file")
    if not isinstance(record.get("applies_to"), dict):
        raise CalibrationError("it does not say which model files it applies to")
    return Calibration(record, path)


def calibration_for(model_path) -> tuple[Calibration | None, str | None]:
    """The calibration beside a model file and None, or None and the one sentence to say why there is none.

    Never the calibration of another model: the file must list the SHA-256 of this very model file.
    """
    model_path = Path(model_path)
    path = calibration_path(model_path)
    keras_path = path.with_name(path.name[:-len(CALIBRATION_SUFFIX)] + ".keras")
    shown = os.path.relpath(keras_path) if keras_path.is_absolute() and Path.cwd() in keras_path.parents else keras_path
    remedy = f"python nets/calibrate.py {shown} makes one"
    if not path.exists():
        return None, f"{model_path.name} has no calibration ({path.name} is not beside it): ages come without a range ({remedy})"
    try:
        calibration = read_calibration(path)
    except CalibrationError as exc:
        return None, f"{path} is damaged, so ages come without a range: {exc} ({remedy})"
    if file_sha256(model_path) not in calibration.applies_to.values():
        return None, (f"{path} was made for another model ({model_path.name} is not among the files it lists by "
                      f"SHA-256), so ages come without a range (calibrate again: {remedy.replace(' makes one', '')})")
    return calibration, None
