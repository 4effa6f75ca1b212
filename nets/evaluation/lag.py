"""The LAG check: the same people photographed young and grown up, with no ages.

LAG/young/PERSON__*.jpg and LAG/adult/PERSON__*.jpg (../shared/data/README.md) are 100x100 tight
crops. Each goes through the project's one preprocessing path (detect.prepare_faces, whose detector
looks again in a black-padded copy of a tight crop), the largest face is kept, and the model's ages
are summed up as: the median of the young photos and their share under 13 and under 18, the median
of the adult photos, and the share of same-person (young, adult) pairs in the right order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
# where the LAG folder is looked for when none is given: a user's copy, then the shared data of development
LAG_PLACES = (REPO_ROOT / "dataset" / "LAG", REPO_ROOT.parent / "shared" / "data" / "LAG")
KINDS = ("young", "adult")


@dataclass
class LagFaces:
    """The LAG photos in which a face was found, ready for any model."""
    root: str
    files: list             # relative paths, kind/NAME.jpg
    person: np.ndarray      # the name before the double underscore
    young: np.ndarray       # True for the young photos
    crops: np.ndarray       # (N, 3, 64, 64, 3) uint8, as training and inference cut them
    not_found: dict         # {kind: [files in which no face was found or that could not be read]}


def default_lag_folder() -> Path | None:
    return next((place for place in LAG_PLACES if (place / "young").is_dir()), None)


_prepared: dict = {}  # (folder, detector) -> LagFaces: detection runs once per process


def load_lag(root=None, detector: str = "yunet") -> LagFaces:
    """Every LAG photo prepared as nets/test.py prepares a photo (cached for the process)."""
    from detect import ImageReadError, load_image, make_detector, prepare_faces

    root = Path(root) if root is not None else default_lag_folder()
    if root is None or not all((root / kind).is_dir() for kind in KINDS):
        raise FileNotFoundError(f"no LAG folder with young/ and adult/ at {root or ' or '.join(map(str, LAG_PLACES))}")
    key = (str(root.resolve()), detector)
    if key in _prepared:
        return _prepared[key]
    finder = make_detector(detector)
    files, people, young, crops = [], [], [], []
    not_found = {kind: [] for kind in KINDS}
    for kind in KINDS:
        for path in sorted((root / kind).glob("*.jpg")):
            try:
                faces = prepare_faces(load_image(path), finder, max_faces=1)
            except ImageReadError:
                faces = []
            if not faces:
                not_found[kind].append(f"{kind}/{path.name}")
                continue
            files.append(f"{kind}/{path.name}")
            people.append(path.name.split("__", 1)[0])
            young.append(kind == "young")
            crops.append(faces[0].crops())
    if not files:
        raise FileNotFoundError(f"no face found in any photo of {root}")
    faces = LagFaces(str(root), files, np.array(people), np.array(young), np.stack(crops), not_found)
    _prepared[key] = faces
    return faces


def lag_summary(ages, faces: LagFaces) -> dict:
    """The LAG numbers of one model's ages (one per face of `faces`)."""
    ages = np.asarray(ages, float).ravel()
    young, adult = ages[faces.young], ages[~faces.young]
    in_order = pairs = 0
    for person in np.unique(faces.person):
        mine = faces.person == person
        their_young, their_adult = ages[mine & faces.young], ages[mine & ~faces.young]
        pairs += len(their_young) * len(their_adult)
        in_order += int((their_young[:, None] < their_adult[None, :]).sum())
    return {
        "young_photos": int(len(young)), "adult_photos": int(len(adult)),
        "not_found": {kind: len(files) for kind, files in faces.not_found.items()},
        "young_median": round(float(np.median(young)), 2),
        "young_under_13": round(float((young < 13).mean()), 4),
        "young_under_18": round(float((young < 18).mean()), 4),
        "adult_median": round(float(np.median(adult)), 2),
        "pairs": int(pairs), "pairs_in_order": round(in_order / pairs, 4) if pairs else None,
    }


def lag_ages(runner, faces: LagFaces, batch_size: int = 256) -> np.ndarray:
    """The ages a model runner (nets.inference.predict.load_model_file, KerasRunner) gives the LAG faces."""
    return np.concatenate([np.asarray(runner.predict_crops(faces.crops[start:start + batch_size])["age"]).ravel()
                           for start in range(0, len(faces.crops), batch_size)])


def lag_check(runner, root=None, detector: str = "yunet") -> dict:
    faces = load_lag(root, detector)
    return {"folder": faces.root, "detector": detector, **lag_summary(lag_ages(runner, faces), faces)}
