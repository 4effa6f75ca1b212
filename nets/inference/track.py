"""Faces followed from frame to frame by box overlap, their age and gender averaged over recent frames.

A video gives the model a slightly different crop of the same face in every frame, and its
answer moves with it (a second-by-second flicker of a few years). Averaging one person's
answers over the last frames removes most of it; matching boxes by overlap is enough to tell
people apart in a webcam or a still shot.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from detect.orientation import box_iou


@dataclass
class Track:
    id: int
    box: list
    ages: deque
    male: deque                  # probability of "M" per frame (age + gender models)
    distributions: deque
    missed: int = 0
    frames: int = field(default=0)


class FaceTracks:
    """Matches each frame's faces to the faces of earlier frames and smooths their answers.

    window: frames averaged per person (15 is half a second at 30 frames per second).
    min_iou: least box overlap with the face's previous box to count as the same person.
    max_missed: frames a person may go undetected before the track is forgotten.
    with_range: with_range(prediction) -> prediction with its age range (and gender uncertainty) worked
        out for its smoothed answers (AgeEstimator.with_range); without it a smoothed answer carries none
        (a single frame's range does not belong beside an average).
    """

    def __init__(self, window: int = 15, min_iou: float = 0.3, max_missed: int = 10, with_range=None):
        if window < 1:
            raise ValueError("the smoothing window must be at least 1 frame")
        self.window, self.min_iou, self.max_missed = int(window), float(min_iou), int(max_missed)
        self.with_range = with_range
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, predictions: list) -> list:
        """The frame's FacePredictions with age, gender and distribution averaged over each
        person's recent frames, and `track` set to the person's number."""
        pairs = sorted(((box_iou(t.box, p.box), ti, pi) for ti, t in enumerate(self.tracks)
                        for pi, p in enumerate(predictions)), reverse=True)
        assigned, used = {}, set()
        for overlap, ti, pi in pairs:  # greedy: the best overlaps first
            if overlap < self.min_iou:
                break
            if pi not in assigned and ti not in used:
                assigned[pi] = self.tracks[ti]
                used.add(ti)
        for ti, track in enumerate(self.tracks):
            if ti not in used:
                track.missed += 1
        smoothed = []
        for pi, prediction in enumerate(predictions):
            track = assigned.get(pi)
            if track is None:
                track = Track(self._next_id, prediction.box, deque(maxlen=self.window), deque(maxlen=self.window),
                              deque(maxlen=self.window))
                self._next_id += 1
                self.tracks.append(track)
            track.box, track.missed = prediction.box, 0
            track.frames += 1
            track.ages.append(prediction.age)
            track.distributions.append(prediction.distribution)
            if prediction.gender is not None:
                track.male.append(prediction.gender_prob if prediction.gender == "M" else 1.0 - prediction.gender_prob)
            smoothed.append(self._smooth(prediction, track))
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return smoothed

    def _smooth(self, prediction, track: Track):
        gender, gender_prob = prediction.gender, prediction.gender_prob
        if track.male:
            male = float(np.mean(track.male))
            gender, gender_prob = ("M", male) if male >= 0.5 else ("F", 1.0 - male)
        smoothed = replace(prediction, age=float(np.mean(track.ages)), gender=gender, gender_prob=gender_prob,
                           distribution=np.mean(track.distributions, axis=0).tolist(), track=track.id)
        if self.with_range:
            return self.with_range(smoothed)
        return replace(smoothed, age_low=None, age_high=None, age_level=None, gender_uncertain=None)
