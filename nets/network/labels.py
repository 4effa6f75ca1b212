"""Two-point label representation: an age spread over its two nearest bins."""
import math

import numpy as np


def bin_interval(bins: int) -> int:
    """Years between bins: `--category 10` gives 12 bins, 10 years apart (0, 10, ..., 110)."""
    if bins < 3:
        raise ValueError("need at least 3 bins")
    return int(math.ceil(100.0 / (bins - 2)))


def bin_centres(bins: int) -> np.ndarray:
    return np.arange(bins, dtype=np.float32) * bin_interval(bins)


def two_point_encode(ages, bins: int = 12) -> np.ndarray:
    """(N, bins) float32: (1 - r) at bin k and r at bin k + 1, where age = interval * (k + r)."""
    ages = np.atleast_1d(np.asarray(ages, dtype=np.float64))
    interval = bin_interval(bins)
    position = np.clip(ages, 0, interval * (bins - 1)) / interval
    lower = np.minimum(np.floor(position).astype(int), bins - 1)
    upper_share = position - lower
    encoded = np.zeros((len(ages), bins), dtype=np.float32)
    rows = np.arange(len(ages))
    encoded[rows, lower] = 1.0 - upper_share
    has_upper = lower + 1 < bins
    encoded[rows[has_upper], lower[has_upper] + 1] = upper_share[has_upper]
    return encoded


def two_point_decode(distribution, bins: int | None = None) -> np.ndarray:
    """The expectation sum_i p_i * centre_i (the paper's decode)."""
    distribution = np.atleast_2d(np.asarray(distribution, dtype=np.float64))
    return distribution @ bin_centres(bins or distribution.shape[1])
