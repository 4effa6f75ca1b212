"""How much a model's answer moves when the face does not: the same portrait 16 times in one photo,
and validation faces re-cut from landmarks moved as a detector's jitter moves them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

GRID_TILES = 4
DEMO_PHOTO = Path(__file__).resolve().parents[2] / "assets" / "astronaut.jpg"


def grid_photo(image: np.ndarray, tiles: int = GRID_TILES) -> np.ndarray:
    """tiles x tiles copies of a photo side by side (the 512x512 demo photo gives 2048x2048)."""
    return np.ascontiguousarray(np.tile(image, (tiles, tiles, 1)))


def grid_steadiness(estimator, image: np.ndarray | None = None, tiles: int = GRID_TILES) -> dict:
    """The spread (max - min) of the ages an AgeEstimator gives the copies of one face in a grid
    photo, and whether they all get the same gender."""
    from detect import load_image

    image = load_image(DEMO_PHOTO) if image is None else image
    faces = estimator.predict(grid_photo(image, tiles))
    ages = [f.age for f in faces]
    genders = sorted({f.gender for f in faces if f.gender is not None})
    return {"copies": tiles * tiles, "faces": len(faces),
            "age_spread": round(float(np.ptp(ages)), 3) if ages else None,
            "ages": [round(a, 2) for a in ages], "one_gender": len(genders) <= 1, "genders": genders}


def landmark_jitter(model, rows, sigma: float = 0.03, copies: int = 8, faces: int = 300, seed: int = 0) -> dict:
    """Each of `faces` validation faces (spread over the rows) prepared `copies` times from its chip
    with every landmark moved by Gaussian noise of sigma eye distances (YuNet's and MTCNN's eyes
    differ by about 0.07 on the same faces): the mean and median spread (max - min) of the age per
    face, and the mean standard deviation."""
    from detect.detector import Detection
    from detect.prepare import decode_chip, prepare_detection
    from nets.training.data import as_inputs
    from preprocessing.schema import BOX_COLUMNS, LANDMARK_COLUMNS

    rng = np.random.default_rng(seed)
    step = max(1, len(rows) // faces)
    chosen = rows.iloc[::step].iloc[:faces]
    spreads, stds = [], []
    for _, row in chosen.iterrows():
        chip = decode_chip(row["image"])
        box = row[BOX_COLUMNS].to_numpy(np.float32)
        landmarks = row[LANDMARK_COLUMNS].to_numpy(np.float32).reshape(5, 2)
        eye = float(np.linalg.norm(landmarks[1] - landmarks[0]))
        crops = []
        for _ in range(copies):
            moved = landmarks + rng.normal(0, sigma * eye, landmarks.shape).astype(np.float32)
            crops.append(prepare_detection(chip, Detection(box=box.copy(), score=1.0, landmarks=moved)).crops())
        ages = np.asarray(model.predict_on_batch(as_inputs(np.stack(crops)))["age"]).ravel()
        spreads.append(float(np.ptp(ages)))
        stds.append(float(np.std(ages)))
    return {"faces": len(spreads), "copies": copies, "sigma_eye_distances": sigma,
            "mean_age_spread": round(float(np.mean(spreads)), 3), "median_age_spread": round(float(np.median(spreads)), 3),
            "mean_age_std": round(float(np.mean(stds)), 3)}
