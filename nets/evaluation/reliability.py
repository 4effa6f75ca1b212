"""How well stated probabilities match how often they are right: reliability bins and the expected
calibration error (ECE) of a two-way answer such as the gender."""
from __future__ import annotations

import numpy as np

ECE_BINS = 10  # equal bins of the stated probability of the answer given, 0.5..1


def reliability(confidence, right, bins: int = ECE_BINS) -> list:
    """Per bin of stated probability (0.5..1): faces, mean stated probability, share right."""
    confidence, right = np.asarray(confidence, np.float64), np.asarray(right, np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    return [{"from": round(float(edges[k]), 3), "faces": int((which == k).sum()),
             "confidence": round(float(confidence[which == k].mean()), 4),
             "accuracy": round(float(right[which == k].mean()), 4)}
            for k in range(bins) if (which == k).any()]


def expected_calibration_error(confidence, right, bins: int = ECE_BINS) -> float:
    """Over the bins of reliability(): the share of faces times |share right - mean stated probability|."""
    confidence, right = np.asarray(confidence, np.float64), np.asarray(right, np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    gaps = [(which == k).sum() * abs(right[which == k].mean() - confidence[which == k].mean())
            for k in range(bins) if (which == k).any()]
    return float(sum(gaps) / max(len(confidence), 1))


def gender_ece(probabilities, true_gender) -> float:
    """ECE of (N, 2) gender probabilities against true genders 0/1 (the answer is the likelier one)."""
    probabilities = np.asarray(probabilities, np.float64)
    right = probabilities.argmax(axis=1) == np.asarray(true_gender)
    return expected_calibration_error(probabilities.max(axis=1), right)
