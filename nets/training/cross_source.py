"""Cross-source validation: train on the faces of one source and validate on another's, so that a
recipe is judged on faces of a kind it never trained on (issue 25)."""
from __future__ import annotations

import json
from pathlib import Path

from nets.training.data import read_split


def key_source(key: str) -> str:
    return key.split(":", 1)[0]


def cross_source_split(split_path, train_source: str, val_source: str) -> dict:
    """A split whose training side is train_source's faces of the split's training side and whose
    validation side is val_source's faces of its validation side: the same validation faces as the
    split's own numbers for val_source, seen by a model that never trained on that source."""
    if train_source == val_source:
        raise ValueError(f"train and validate on two different sources, not {train_source} twice")
    saved = read_split(split_path, "give a NAME.split.json")
    train = [k for k in saved["train"] if key_source(k) == train_source]
    val = [k for k in saved["val"] if key_source(k) == val_source]
    for side, source, keys in (("training", train_source, train), ("validation", val_source, val)):
        if not keys:
            raise ValueError(f"{split_path} has no {source} faces on its {side} side")
    return {"seed": saved.get("seed"), "val_split": saved.get("val_split"),
            "method": f"cross-source: {train_source} faces of the training side of {Path(split_path).name}, "
                      f"{val_source} faces of its validation side",
            "train": train, "val": val}


def write_cross_source_split(split_path, train_source: str, val_source: str, out) -> dict:
    split = cross_source_split(split_path, train_source, val_source)
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists; a split is never replaced (the model beside it was trained on it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(split))
    return split
