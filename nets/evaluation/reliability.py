"""How well stated probabilities match how often they are right: reliability bins and the expected
calibration error (ECE) of a two-way answer such as the gender."""
from __future__ import annotations

import numpy as np

ECE_BINS = 10  # equal bins of the stated probability of the answer given, 0.5..1


def _bins(confidence, right, bins: int):
    """(lower edge, stated probabilities, rights) of every non-empty bin of stated probability 0.5..1."""
    confidence, right = np.asarray(confidence, np.float64), np.asarray(right, np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    return [(float(edges[k]), confidence[which == k], right[which == k]) for k in range(bins) if (which == k).any()]


def reliability(confidence, right, bins: int = ECE_BINS) -> list:
    """Per bin of stated probability (0.5..1): faces, mean stated probability, share right."""
    return [{"from": round(low, 3), "faces": len(stated), "confidence": round(float(stated.mean()), 4),
             "accuracy": round(float(got.mean()), 4)} for low, stated, got in _bins(confidence, right, bins)]


def expected_calibration_error(confidence, right, bins: int = ECE_BINS) -> float:
    """Over the bins of reliability(): the share of faces times |share right - mean stated probability|."""
    gaps = [len(stated) * abs(got.mean() - stated.mean()) for _, stated, got in _bins(confidence, right, bins)]
    return float(sum(gaps) / max(len(np.asarray(confidence)), 1))


def gender_ece(probabilities, true_gender) -> float:
    """ECE of (N, 2) gender probabilities against true genders 0/1 (the answer is the likelier one)."""
    probabilities = np.asarray(probabilities, np.float64)
    right = probabilities.argmax(axis=1) == np.asarray(true_gender)
    return expected_calibration_error(probabilities.max(axis=1), right)
