"""Levers against the pull of the many 20-40 year olds: fewer faces of the common ages (the original's
per-age cap) or more weight on the rare ones (label distribution smoothing, LDS)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from nets.training.data import row_sources

MAX_AGE = 120
LDS_POWERS = {"inverse": 1.0, "sqrt": 0.5}  # weight = smoothed density ** -power
LDS_MAX_WEIGHT = 5.0  # a face of a year with hardly any faces counts at most this many times the average


def cap_per_age(rows: pd.DataFrame, cap: int, seed: int = 2019) -> pd.DataFrame:
    """At most `cap` faces of each year of age and each source (the original's rectify_data, per
    source so that every age keeps faces of both kinds), drawn at random with `seed`."""
    if cap < 1:
        raise ValueError(f"the per-age cap must be 1 or more, not {cap}")
    rng = np.random.default_rng(seed)
    keys = pd.Series(row_sources(rows)) + ":" + rows["age"].round().astype(int).astype(str).to_numpy()
    kept = []
    for _, members in pd.Series(np.arange(len(rows))).groupby(keys.to_numpy()):
        members = members.to_numpy()
        kept.append(members if len(members) <= cap else rng.choice(members, cap, replace=False))
    return rows.iloc[np.sort(np.concatenate(kept))].reset_index(drop=True)


def smoothed_density(ages, sigma: float) -> np.ndarray:
    """The share of faces at each whole year 0..MAX_AGE, smoothed with a Gaussian of `sigma` years
    (Yang et al. 2021, "Delving into Deep Imbalanced Regression": the effective label density)."""
    counts = np.bincount(np.clip(np.round(np.asarray(ages, float)), 0, MAX_AGE).astype(int), minlength=MAX_AGE + 1)
    years = np.arange(MAX_AGE + 1)
    kernel = np.exp(-0.5 * ((years[:, None] - years[None, :]) / sigma) ** 2) if sigma > 0 else np.eye(MAX_AGE + 1)
    density = kernel @ counts.astype(float)
    return density / density.sum()


def lds_weights(ages, kind: str, sigma: float = 2.0, max_weight: float = LDS_MAX_WEIGHT) -> np.ndarray:
    """A loss weight per face: its age's smoothed density to the power -1 ("inverse") or -1/2
    ("sqrt"), scaled to an average of 1 over these faces and capped at max_weight."""
    if kind not in LDS_POWERS:
        raise ValueError(f"LDS weights must be {' or '.join(LDS_POWERS)}, not {kind!r}")
    years = np.clip(np.round(np.asarray(ages, float)), 0, MAX_AGE).astype(int)
    weights = smoothed_density(ages, sigma)[years] ** -LDS_POWERS[kind]
    weights /= weights.mean()
    for _ in range(10):  # capping lowers the average: scale back up and cap again until it settles
        weights = np.minimum(weights, max_weight)
        weights /= weights.mean()
    return np.minimum(weights, max_weight).astype(np.float32)
