"""The train/validation split: copies of one photo never on both sides, sources and ages mixed alike."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from nets.training.data import duplicate_groups, make_or_load_split


def chip_jpeg(seed: int, quality: int = 95, size: int = 256) -> bytes:
    """A smooth random 'face' (so a re-encoded copy stays close to it), as JPEG bytes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    chip = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".jpg", chip, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def synthetic_rows(n_utk=300, n_asia=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for source, n in (("utk", n_utk), ("asia", n_asia)):
        for k in range(n):
            rows.append({"key": f"{source}:{k:05d}.jpg", "age": float(rng.integers(1, 90)),
                         "gender": int(rng.integers(0, 2)), "image": chip_jpeg(k + (0 if source == "utk" else 100_000))})
    frame = pd.DataFrame(rows)
    # copies: the same bytes under another name and label, a re-encoded copy, a copy across sources
    frame.loc[len(frame)] = {"key": "utk:copy_a.jpg", "age": 41.0, "gender": 0, "image": frame.loc[3, "image"]}
    frame.loc[len(frame)] = {"key": "utk:copy_b.jpg", "age": 40.0, "gender": 1, "image": frame.loc[3, "image"]}
    frame.loc[len(frame)] = {"key": "utk:resaved.jpg", "age": 12.0, "gender": 1, "image": chip_jpeg(10, quality=70)}
    frame.loc[len(frame)] = {"key": "asia:from_utk.jpg", "age": 20.0, "gender": 0, "image": frame.loc[20, "image"]}
    return frame


def test_duplicate_groups_find_byte_identical_and_resaved_copies_only():
    rows = synthetic_rows()
    groups, report = duplicate_groups(rows)
    index = {key: i for i, key in enumerate(rows["key"])}
    assert groups[index["utk:copy_a.jpg"]] == groups[index["utk:copy_b.jpg"]] == groups[index["utk:00003.jpg"]]
    assert groups[index["utk:resaved.jpg"]] == groups[index["utk:00010.jpg"]]
    assert groups[index["asia:from_utk.jpg"]] == groups[index["utk:00020.jpg"]]
    assert report == {"byte_identical_copies": 3, "near_duplicate_pairs": 1, "groups_with_copies": 3,
                      "faces_in_them": 7}
    assert len(set(groups)) == len(rows) - 4  # nothing else merged


def test_new_split_keeps_copies_together_stratifies_and_is_reused(tmp_path):
    rows = synthetic_rows()
    path = tmp_path / "m.split.json"
    notes = []
    split = make_or_load_split(rows, path, 0.2, 2019, log=notes.append)
    saved = json.loads(path.read_text())
    assert saved["duplicates"]["groups_with_copies"] == 3 and "StratifiedGroupKFold" in saved["method"]
    assert "3 photos with copies" in notes[-1]
    train, val = set(split.train["key"]), set(split.val["key"])
    assert not train & val and train | val == set(rows["key"])
    groups, _ = duplicate_groups(rows)
    side = {}
    for key, group in zip(rows["key"], groups):
        assert side.setdefault(group, key in val) == (key in val), f"{key}: copies on both sides"
    sources = rows["key"].str.split(":").str[0]
    for source in ("utk", "asia"):
        share = split.val["key"].str.startswith(source + ":").sum() / (sources == source).sum()
        assert share == pytest.approx(0.2, abs=0.03), source
    old = rows["age"] >= 60
    assert split.val["age"].ge(60).sum() / old.sum() == pytest.approx(0.2, abs=0.06)
    again = make_or_load_split(rows, path, 0.5, 7, log=notes.append)
    assert set(again.val["key"]) == val and "using the saved split" in notes[-1]
    with pytest.raises(ValueError, match="cannot be split"):
        make_or_load_split(rows.iloc[:1], tmp_path / "one.split.json", 0.2, 2019)


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_an_earlier_split_keeps_its_sides_and_copies_follow_training(tmp_path):
    rows = synthetic_rows()
    utk = rows[rows["key"].str.startswith("utk:") & ~rows["key"].isin(["utk:copy_a.jpg", "utk:copy_b.jpg"])]
    earlier = {"train": [k for k in utk["key"] if k != "utk:00003.jpg"][60:], "val": list(utk["key"][:60]) + ["utk:00003.jpg"]}
    assert "utk:00010.jpg" in earlier["val"] and "utk:resaved.jpg" in earlier["train"]  # one copy on each side
    old = tmp_path / "old.split.json"
    old.write_text(json.dumps({"seed": 1, "val_split": 0.2, **earlier}))
    split = make_or_load_split(rows, tmp_path / "new.split.json", 0.2, 2019, log=lambda m: None, keep_path=old)
    train, val = set(split.train["key"]), set(split.val["key"])
    assert set(earlier["train"]) <= train
    assert set(earlier["val"]) - {"utk:00010.jpg"} <= val
    assert "utk:00010.jpg" in train  # its re-saved copy was on the earlier training side
    # copies the earlier split did not list follow their photo's side
    assert {"utk:copy_a.jpg", "utk:copy_b.jpg", "asia:from_utk.jpg"} <= val
    saved = json.loads((tmp_path / "new.split.json").read_text())
    assert saved["duplicates"]["kept_from_earlier_split"]["val_moved_to_train_with_their_copies"] == 1
    asia = split.val["key"].str.startswith("asia:").sum() / rows["key"].str.startswith("asia:").sum()
    assert asia == pytest.approx(0.2, abs=0.03)
