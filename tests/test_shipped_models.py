"""The models shipped in model/: intact, finite, and as accurate as their cards say."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

MODEL_DIR = REPO_ROOT / "model"
CARDS = sorted(MODEL_DIR.glob("*.card.json"))
SHIPPED = "c3ae_utk_asia"  # the models' names: c3ae_utk_asia_age_gender.*, c3ae_utk_asia_age.*
GENDER_CARD = MODEL_DIR / f"{SHIPPED}_age_gender.card.json"
# where the raw photos of each source are, for the check faces of a card
RAW = {"utk": ("UTKFace", "utk"), "asia": ("AllAgeFaces", "asia")}


def test_both_models_are_shipped_with_cards_and_the_default_is_one_of_them():
    from nets.inference.predict import DEFAULT_MODEL

    names = {c.name for c in CARDS}
    assert {f"{SHIPPED}_age.card.json", f"{SHIPPED}_age_gender.card.json"} <= names
    card = json.loads(GENDER_CARD.read_text())
    assert DEFAULT_MODEL.name in card["files"] and DEFAULT_MODEL.is_file()
    # the default detector is the one that prepared the default model's training data
    from detect import DEFAULT_DETECTOR

    assert set(card["data"]["detectors"]) == {DEFAULT_DETECTOR}


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.name)
def test_files_match_their_card_and_load_finite(card_path):
    from nets.network.model import describe, load_c3ae
    from nets.inference.tflite import TFLiteModel

    card = json.loads(card_path.read_text())
    for name, entry in card["files"].items():
        data = (MODEL_DIR / name).read_bytes()
        assert len(data) == entry["bytes"], name
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{name} differs from its card"
    model = load_c3ae(MODEL_DIR / card["model"])  # raises on non-finite weights
    assert describe(model)["params"] == card["description"]["params"] < 100_000
    assert describe(model)["mirror"] == card["description"].get("mirror", False)
    for name in card["files"]:
        if name.endswith(".tflite"):
            lite = TFLiteModel(MODEL_DIR / name)
            assert set(lite.outputs) == set(card["description"]["outputs"])


def test_every_shipped_model_file_is_in_a_card():
    """A shipped file no card lists could not be told apart from a stale one: every .keras, .tflite and
    split in model/ is hashed in its model's card."""
    listed = {name for card in CARDS for name in json.loads(card.read_text())["files"]}
    shipped = {p.name for pattern in ("*.keras", "*.tflite", "*.split.json") for p in MODEL_DIR.glob(pattern)}
    assert shipped <= listed, f"not in any card: {sorted(shipped - listed)}"


@pytest.mark.slow
def test_gender_model_reproduces_its_card_on_raw_photos(repo_root):
    """The card's check faces, read from the raw photos of each source, give the MAE the card claims."""
    from detect import load_image, make_detector
    from nets.model_card import check_keys
    from nets.inference.predict import AgeEstimator
    from preprocessing.sources import read_source

    card = json.loads(GENDER_CARD.read_text())
    (detector,) = card["data"]["detectors"]  # its data was prepared with this one
    estimator = AgeEstimator(MODEL_DIR / card["model"], detector=make_detector(detector))
    keys = check_keys(MODEL_DIR / card["model"].replace(".keras", ".split.json"))
    labels = {}
    for source in {key.split(":", 1)[0] for key in keys}:
        folder = (repo_root / ".." / "shared" / "data" / RAW[source][0]).resolve()
        if not folder.is_dir():
            pytest.skip(f"the raw photos of {source} are not at {folder}")
        items, _ = read_source(RAW[source][1], folder)
        labels.update({f"{source}:{item.name}": item for item in items})
    errors, correct = [], []
    for key in keys:
        item = labels[key]
        faces = estimator.predict(load_image(item.path))
        assert faces, f"{key}: a face found at preparation time must be found again"
        errors.append(abs(faces[0].age - item.age))
        correct.append(faces[0].gender == "FM"[item.gender])
    mae = float(np.mean(errors))
    assert abs(mae - card["check_faces"]["mae"]) < 0.05
    assert abs(mae - card["validation"]["mae"]) <= 0.5
    assert abs(float(np.mean(correct)) - card["check_faces"]["gender_accuracy"]) < 0.01


@pytest.mark.slow
def test_quick_start_demo_writes_an_annotated_image(tmp_path, astronaut_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "nets" / "test.py"), "-i", str(astronaut_path),
                             "--no-show"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "age" in result.stdout and ("female" in result.stdout or "male" in result.stdout)
    assert (tmp_path / "runs" / "astronaut_c3ae.jpg").stat().st_size > 10_000


@pytest.mark.slow
def test_default_model_on_tight_crops_and_whole_photos(tmp_path, utk_dir, astronaut_path, link_files):
    names = sorted(p.name for p in utk_dir.iterdir())[::2000][:5]
    folder = link_files([utk_dir / n for n in names] + [astronaut_path], tmp_path / "photos")
    result = subprocess.run([sys.executable, "nets/test.py", "--dir", str(folder), "--json", "--no-show"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    found = {rec["file"].rsplit("/", 1)[-1] for rec in records}
    assert found == set(names) | {"astronaut.jpg"}
    assert all(rec["gender"] in ("F", "M") and 0 <= rec["age"] <= 120 for rec in records)


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.name)
def test_mirror_models_answer_a_face_and_its_mirror_image_alike_in_keras_and_tflite(card_path):
    from nets.training.data import as_inputs
    from nets.training.export import parity_crops
    from nets.network.model import load_c3ae
    from nets.inference.tflite import TFLiteModel

    card = json.loads(card_path.read_text())
    if not card["description"].get("mirror"):
        pytest.skip("a single-pass model")
    crops = parity_crops()
    flipped = np.flip(crops, axis=3)
    model = load_c3ae(MODEL_DIR / card["model"])
    lite = TFLiteModel(MODEL_DIR / card["model"].replace(".keras", ".float32.tflite"))
    for run in (lambda c: model.predict(as_inputs(c), verbose=0), lite.predict_crops):
        got, got_flipped = run(crops), run(flipped)
        np.testing.assert_allclose(got["age"], got_flipped["age"], atol=1e-3)
        assert np.ptp(got["age"]) > 1  # and different faces still get different ages
