"""Faces followed from frame to frame (nets/inference/track.py): one number per person, answers averaged."""
from __future__ import annotations

import numpy as np
import pytest

from nets.inference.predict import FacePrediction
from nets.inference.track import FaceTracks


def face(box, age, gender="F", prob=0.8):
    return FacePrediction(box=list(map(float, box)), score=0.9, landmarks=[[0, 0]] * 5, age=float(age),
                          distribution=[1.0] + [0.0] * 11, gender=gender, gender_prob=prob)


def test_two_people_keep_their_numbers_and_their_ages_steady():
    rng = np.random.default_rng(0)
    tracks = FaceTracks(window=10)
    raw, smooth = {0: [], 1: []}, {0: [], 1: []}
    for frame in range(60):
        shift = rng.uniform(-3, 3, size=2)
        people = [face([100 + shift[0], 100, 200 + shift[0], 220], 30 + rng.normal(0, 2)),
                  face([400, 90 + shift[1], 480, 190 + shift[1]], 60 + rng.normal(0, 2), "M", 0.9)]
        out = tracks.update(people[::-1] if frame % 2 else people)  # the detector's order may change
        assert len(out) == 2
        for prediction in out:
            person = 0 if prediction.box[0] < 300 else 1
            assert prediction.track == person
            smooth[person].append(prediction.age)
        for person, p in enumerate(people):
            raw[person].append(p.age)
    for person in (0, 1):
        assert np.ptp(smooth[person][10:]) < 0.5 * np.ptp(raw[person][10:])
    assert abs(np.mean(smooth[0][10:]) - 30) < 1 and abs(np.mean(smooth[1][10:]) - 60) < 1


def test_a_person_missing_for_a_few_frames_keeps_the_number_a_new_one_gets_another():
    tracks = FaceTracks(window=5, max_missed=3)
    box = [10, 10, 110, 130]
    assert tracks.update([face(box, 20)])[0].track == 0
    for _ in range(3):
        assert tracks.update([]) == []
    assert tracks.update([face(box, 22)])[0].track == 0  # back within max_missed: same person
    for _ in range(4):
        tracks.update([])
    again = tracks.update([face(box, 40)])[0]
    assert again.track == 1 and again.age == pytest.approx(40)  # forgotten: a fresh start
    far = tracks.update([face(box, 40), face([300, 10, 400, 130], 50)])
    assert sorted(p.track for p in far) == [1, 2]


def test_gender_is_the_average_probability_over_the_window():
    tracks = FaceTracks(window=4)
    box = [0, 0, 100, 100]
    answers = [("M", 0.6), ("F", 0.9), ("F", 0.8), ("M", 0.55)]
    for gender, prob in answers:
        out = tracks.update([face(box, 30, gender, prob)])[0]
    male = np.mean([p if g == "M" else 1 - p for g, p in answers])
    assert out.gender == "F" and out.gender_prob == pytest.approx(1 - male)


def test_age_only_models_keep_gender_empty():
    tracks = FaceTracks(window=3)
    out = tracks.update([face([0, 0, 50, 50], 33, None, None)])[0]
    assert out.gender is None and out.gender_prob is None and out.age == 33


def test_window_must_be_positive():
    with pytest.raises(ValueError):
        FaceTracks(window=0)
