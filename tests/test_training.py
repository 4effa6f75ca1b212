"""The trainer CLIs (nets/C3AE.py, nets/C3AE_expand.py) end to end on a small prepared UTKFace sample:
files beside the model, split, state, -test, -fz, --resume, -fp16, --strategy mirrored, NaN safety, bad input."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nets.training.data import as_inputs, face_crops, load_rows, make_or_load_split
from nets.network.model import as_float32, describe, load_c3ae
from nets.network.contract import artifact

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODELS = ["trained_age_model", "trained_gender_model"]


def read_log(model_path) -> list[dict]:
    with open(artifact(model_path, ".log.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def ok(result, what="command"):
    assert result.returncode == 0, (f"{what}: exit {result.returncode}\n"
                                    f"stderr:\n{result.stderr[-4000:]}\nstdout:\n{result.stdout[-2000:]}")
    return result


def run_trainer(argv, gender: bool, capsys):
    """nets/C3AE.py (gender False) or nets/C3AE_expand.py (True) in this process, through the same
    nets.training.cli.main that the scripts sys.exit() with: (exit code, stdout, stderr lines)."""
    from nets.training.cli import main

    code = main([str(a) for a in argv], "C3AE", gender=gender)
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def prepared_rows(prepared_utk, gender: bool) -> pd.DataFrame:
    rows = load_rows(prepared_utk, "utk")
    return rows[rows["gender"] >= 0].reset_index(drop=True) if gender else rows


# --- what a training run leaves behind ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fixture", MODELS)
def test_log_has_two_epochs_and_the_training_loss_falls(fixture, request):
    model_path = request.getfixturevalue(fixture)
    log = read_log(model_path)
    assert [row["epoch"] for row in log] == ["0", "1"]
    assert {"loss", "age_mae", "val_age_mae", "val_loss"} <= set(log[0])
    losses = [float(row["loss"]) for row in log]
    assert all(math.isfinite(v) for v in losses)
    assert losses[1] < losses[0], f"training loss did not fall: {losses}"
    assert artifact(model_path, ".curves.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("fixture", MODELS)
def test_split_is_saved_disjoint_complete_and_reused(fixture, request, prepared_utk):
    model_path = request.getfixturevalue(fixture)
    split_path = artifact(model_path, ".split.json")
    saved = read_json(split_path)
    train, val = saved["train"], saved["val"]
    rows = prepared_rows(prepared_utk, gender=fixture == "trained_gender_model")
    assert len(set(train)) == len(train) and len(set(val)) == len(val)
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(rows["key"])
    assert len(val) == pytest.approx(0.2 * len(rows), abs=0.03 * len(rows))  # whole photos and age decades per side
    assert saved["seed"] == 2019 and saved["val_split"] == 0.2 and "duplicates" in saved
    before = split_path.read_bytes()
    notes = []
    # other seed and ratio: the saved split wins, and the file is left as it was
    again = make_or_load_split(rows, split_path, val_split=0.5, seed=7, log=notes.append)
    assert sorted(again.train["key"]) == sorted(train) and sorted(again.val["key"]) == sorted(val)
    assert split_path.read_bytes() == before
    assert any("saved split" in n for n in notes)
    # an earlier split to keep the sides of is not used once this one is saved: said, not silent
    notes.clear()
    make_or_load_split(rows, split_path, log=notes.append, keep_path=split_path.with_name("other.split.json"))
    assert any(n.startswith("note: --split-from") and "is not used" in n for n in notes), notes


@pytest.mark.slow
@pytest.mark.parametrize("fixture", MODELS)
def test_state_records_the_config_and_the_best_val_mae(fixture, request, prepared_utk):
    model_path = request.getfixturevalue(fixture)
    gender = fixture == "trained_gender_model"
    state = read_json(artifact(model_path, ".state.json"))
    config = state["config"]
    assert config["se"] is True and config["white"] is True and config["gender"] is gender
    assert config["epochs"] == 2 and config["dataset"] == str(prepared_utk) and config["source"] == "utk"
    assert config["save_path"] == str(model_path) and config["loss"] == "kl" and config["lr"] == 0.002
    assert state["epochs_done"] == 2 and len(state["history"]) == 2
    val_mae = [float(row["val_age_mae"]) for row in read_log(model_path)]
    assert state["best_val_mae"] == pytest.approx(min(val_mae), rel=1e-5)
    assert state["best_epoch"] == int(np.argmin(val_mae)) + 1
    assert state["train_faces"] + state["val_faces"] == len(prepared_rows(prepared_utk, gender))
    assert state["model"]["se"] and state["model"]["white"]
    # the model file says the same about itself, without any flag
    model = load_c3ae(model_path)
    assert describe(model) == state["model"]
    assert describe(model)["variant"] == ("age+gender" if gender else "age")


# --- -test -----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fixture", MODELS)
def test_evaluation_cli_writes_metrics_and_plot(fixture, request, prepared_utk, capsys):
    model_path = request.getfixturevalue(fixture)
    gender = fixture == "trained_gender_model"
    code, stdout, said = run_trainer(["-test", "-p", model_path, "--dataset", prepared_utk], gender, capsys)
    assert code == 0, said
    metrics = read_json(artifact(model_path, ".eval.json"))
    assert json.loads(stdout) == metrics
    assert any(line.startswith("validation: ") and "MAE" in line for line in said), said
    assert any(line.strip().startswith("utk: ") for line in said) and said[-1].startswith("-> ")
    val = read_json(artifact(model_path, ".split.json"))["val"]
    # the one source, on its own, is all of it
    assert metrics["per_source"]["utk"]["mae"] == metrics["mae"] and metrics["per_source"]["utk"]["faces"] == len(val)
    # degraded copies: each changes the answers
    assert set(metrics["degraded"]) == {"grayscale", "4x down-and-up", "JPEG quality 30", "old print"}
    for entry in metrics["degraded"].values():
        assert entry["mae_change"] == pytest.approx(entry["mae"] - metrics["mae"], abs=1e-3) and entry["mae_change"] != 0
        # the signed shift of the answers, overall and per decade, weighs the decades by their faces
        per = entry["age_shift_per_decade"]
        assert entry["age_shift"] != 0 and set(per) == set(metrics["mae_per_decade"])
        assert entry["age_shift"] == pytest.approx(sum(d["shift"] * d["n"] for d in per.values()) / len(val), abs=2e-3)
    # the signed bias: per decade, and the balanced MAE from the decades with 20 faces or more
    decades = metrics["mae_per_decade"]
    assert all(abs(d["bias"]) <= d["mae"] + 1e-3 for d in decades.values())
    counted = [d["mae"] for k, d in decades.items() if d["n"] >= 20 and int(k.split("-")[0]) < 80]
    assert metrics["balanced_mae"] == (pytest.approx(np.mean(counted), abs=1e-3) if counted else None)
    assert any("signed bias (predicted minus true) per decade" in line for line in said)
    steady = metrics["steadiness"]
    assert steady["detector"] == "yunet" and steady["grid"]["copies"] == 16 and steady["grid"]["faces"] >= 12
    assert steady["landmark_jitter"]["faces"] > 0 and steady["landmark_jitter"]["mean_age_spread"] > 0
    assert metrics["faces"] == len(val)
    assert 0 <= metrics["cs5"] <= 1 and metrics["mae"] > 0
    decades = metrics["mae_per_decade"]
    assert sum(d["n"] for d in decades.values()) == len(val)
    assert all(k == f"{int(k.split('-')[0])}-{int(k.split('-')[0]) + 9}" for k in decades)
    # evaluated on the saved validation split with the best checkpoint: Keras' val MAE of that epoch
    state = read_json(artifact(model_path, ".state.json"))
    assert metrics["mae"] == pytest.approx(state["best_val_mae"], abs=0.01)
    if fixture == "trained_gender_model":
        assert 0 <= metrics["gender_accuracy"] <= 1
        # per decade too, and those add up to the whole (every UTKFace face has a gender)
        weighted = sum(d["gender_accuracy"] * d["n"] for d in decades.values()) / len(val)
        assert weighted == pytest.approx(metrics["gender_accuracy"], abs=1e-3)
    else:
        assert "gender_accuracy" not in metrics
        assert not any("gender_accuracy" in d for d in decades.values())
    assert artifact(model_path, ".eval.png").stat().st_size > 1000




def test_faces_with_damaged_values_are_left_out_and_said(prepared_utk, tmp_path):
    """A damaged or hand-edited chunk asked for a 687 GB crop, or stopped at a NaN without naming its file."""
    chunk = sorted(prepared_utk.glob("utk_*.feather"))[0]
    frame = pd.read_feather(chunk)
    frame.loc[0, "outer_x1"] = 1e9
    frame.loc[1, "age"] = float("nan")
    frame.loc[2, "gender"] = 5
    frame.loc[3, "image"] = b""
    damaged = tmp_path / chunk.name
    frame.to_feather(damaged)
    said = []
    rows = load_rows(tmp_path, "utk", log=said.append)
    assert len(rows) == len(frame) - 4 and not rows["source_file"].isin(frame["source_file"][:4]).any()
    assert said == [f"note: {damaged}: 4 of {len(frame)} faces left out (unusable age, gender, triple box or chip)"]
    assert len(face_crops(rows)) == len(rows)
    # the same faces in a second folder below the dataset (prepared twice): used once, and said
    (tmp_path / "again").mkdir()
    shutil.copy(damaged, tmp_path / "again" / chunk.name)
    said.clear()
    assert len(load_rows(tmp_path, "utk", log=said.append)) == len(rows)
    assert said[-1].startswith(f"note: {len(rows)} faces are in more than one chunk (e.g. "), said
    # a saved split whose validation faces are not all in the data says so
    split = tmp_path / "m.split.json"
    split.write_text(json.dumps({"seed": 1, "val_split": 0.2, "train": list(rows["key"][:-2]),
                                 "val": list(rows["key"][-2:]) + ["utk:gone.jpg"]}))
    said.clear()
    assert len(make_or_load_split(rows, split, log=said.append).val) == 2
    assert any("1 of the 3 validation faces" in line for line in said), said

def test_a_chunk_with_ages_as_text_and_a_damaged_chip_trains_on_the_rest(prepared_utk, tmp_path):
    """A hand-edited chunk whose age column holds text ended in a traceback, and a chip that is not a whole
    JPEG stopped training mid-epoch ("stored chip is not a decodable JPEG", naming no file): now the text
    is read as numbers, and the faces that cannot be used are left out with a note naming the chunk."""
    chunk = sorted(prepared_utk.glob("utk_*.feather"))[0]
    frame = pd.read_feather(chunk)
    frame["age"] = frame["age"].map(lambda a: f"{a:g}").astype(object)
    frame.loc[0, "age"] = "unknown"
    frame.loc[1, "image"] = frame.loc[1, "image"][:len(frame.loc[1, "image"]) // 2]  # cut off half-way
    frame.loc[2, "image"] = b"not a jpeg at all"
    damaged = tmp_path / chunk.name
    frame.to_feather(damaged)
    said = []
    rows = load_rows(tmp_path, "utk", log=said.append)
    assert said == [f"note: {damaged}: 3 of {len(frame)} faces left out (unusable age, gender, triple box or chip)"]
    assert rows["age"].dtype == np.float32 and len(rows) == len(frame) - 3
    assert len(face_crops(rows)) == len(rows)  # every chip left in decodes


@pytest.mark.slow
def test_evaluation_needs_the_split_the_model_was_trained_with(trained_age_model, prepared_utk, capsys, tmp_path):
    """Without its split file a new split put some of the model's training faces on the validation side,
    and -test scored the model on them (MAE 4.03 against 5.83 on its real split): now refused."""
    lonely = tmp_path / "m.keras"
    shutil.copy(trained_age_model, lonely)
    code, stdout, said = run_trainer(["-test", "-p", lonely, "--dataset", prepared_utk], False, capsys)
    assert code == 2 and stdout == "" and said[-1].startswith("error: no m.split.json beside"), said
    assert not artifact(lonely, ".split.json").exists() and not artifact(lonely, ".eval.json").exists()
    # with the split it was trained with, the same faces are validated as when it was trained
    code, stdout, said = run_trainer(["-test", "-p", lonely, "--dataset", prepared_utk, "--split-from",
                                      artifact(trained_age_model, ".split.json")], False, capsys)
    assert code == 0, said
    assert read_json(artifact(lonely, ".split.json"))["val"] == read_json(artifact(trained_age_model, ".split.json"))["val"]
    for damage in ("{}", '{"train": ["a", "b"], "va'):
        artifact(lonely, ".split.json").write_text(damage)
        code, _, said = run_trainer(["-test", "-p", lonely, "--dataset", prepared_utk], False, capsys)
        assert code == 2 and said[-1].startswith(f"error: {artifact(lonely, '.split.json')} is not a readable split"), said


@pytest.mark.slow
def test_evaluation_on_part_of_the_validation_faces_keeps_the_full_record(trained_age_model, tiny_utk, capsys,
                                                                       tmp_path):
    model = tmp_path / "m.keras"
    for suffix in (".keras", ".split.json"):
        shutil.copy(artifact(trained_age_model, suffix), artifact(model, suffix))
    record = artifact(model, ".eval.json")
    record.write_text('{"the full evaluation": true}')
    code, stdout, said = run_trainer(["-test", "-p", model, "--dataset", tiny_utk], False, capsys)
    assert code == 0, said
    val = read_json(artifact(model, ".split.json"))["val"]
    partial = read_json(artifact(model, ".partial.eval.json"))
    assert 0 < partial["faces"] < len(val) and json.loads(stdout) == partial
    assert any(f"of the {len(val)} validation faces are here" in line and "m.partial.eval.json" in line
               for line in said), said
    assert read_json(record) == {"the full evaluation": True}  # left as it was
    assert artifact(model, ".partial.eval.png").exists() and not artifact(model, ".eval.png").exists()


@pytest.mark.slow
def test_evaluation_on_faces_of_another_detector_keeps_the_models_own_record(trained_age_model, prepared_utk,
                                                                           capsys, tmp_path):
    """-test on data prepared with another detector than the model's training data used to be
    written as the model's own record."""
    model = tmp_path / "m.keras"
    for suffix in (".keras", ".split.json", ".state.json"):
        shutil.copy(artifact(trained_age_model, suffix), artifact(model, suffix))
    state = read_json(artifact(model, ".state.json"))
    here = load_rows(prepared_utk, "utk")["detector"].mode()[0]
    other = "mtcnn" if here == "yunet" else "yunet"
    state["data"]["detectors"] = {other: state["train_faces"] + state["val_faces"]}  # as if trained on the other's faces
    artifact(model, ".state.json").write_text(json.dumps(state))
    code, stdout, said = run_trainer(["-test", "-p", model, "--dataset", prepared_utk], False, capsys)
    assert code == 0, said
    assert json.loads(stdout) == read_json(artifact(model, f".{here}-data.eval.json"))
    assert any(f"prepared with {here}, the model's training faces with {other}" in line for line in said), said
    assert not artifact(model, ".eval.json").exists()


@pytest.mark.slow
def test_evaluation_beside_a_model_in_a_read_only_folder_is_one_sentence(trained_age_model, prepared_utk, tmp_path,
                                                                          as_a_user, repo_root, messages):
    import subprocess
    import sys

    locked = tmp_path / "locked"
    locked.mkdir()
    for suffix in (".keras", ".split.json"):
        shutil.copy(artifact(trained_age_model, suffix), artifact(locked / "m.keras", suffix))
    locked.chmod(0o555)
    result = subprocess.run([*as_a_user, sys.executable, "nets/C3AE.py", "-test", "-p", str(locked / "m.keras"),
                             "--dataset", str(prepared_utk)], cwd=repo_root, capture_output=True, text=True,
                            timeout=600)
    said = messages(result.stderr)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert said[-1].startswith(f"error: {locked}/m.") and said[-1].endswith("permission denied"), said


@pytest.mark.slow
def test_mirror_evaluation_averages_over_the_crops_width_and_keeps_the_plain_one(trained_gender_model, prepared_utk,
                                                                                 capsys):
    from nets.evaluation.evaluate import predict_rows
    from nets.network.model import with_mirror

    plain = artifact(trained_gender_model, ".eval.json")
    before = plain.read_bytes() if plain.exists() else None
    code, stdout, said = run_trainer(["-test", "--mirror", "-p", trained_gender_model, "--dataset", prepared_utk],
                                     True, capsys)
    assert code == 0, said
    assert any(line.startswith("validation (mirror-averaged): ") for line in said), said
    assert json.loads(stdout) == read_json(artifact(trained_gender_model, ".mirror.eval.json"))
    assert (plain.read_bytes() if plain.exists() else None) == before
    # the average of the crops and their left-right mirror, computed by hand
    model = load_c3ae(trained_gender_model)
    rows = load_rows(prepared_utk, "utk").iloc[:6]
    crops = face_crops(rows)
    by_hand = (model.predict(as_inputs(crops), verbose=0)["age"]
               + model.predict(as_inputs(np.flip(crops, axis=3)), verbose=0)["age"]) / 2
    np.testing.assert_allclose(predict_rows(with_mirror(model), rows)["age"], by_hand, atol=1e-4)
    assert not np.allclose(predict_rows(model, rows)["age"], by_hand, atol=1e-4)


# --- -fz -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_freeze_writes_tflite_files_with_parity(frozen_gender_model, repo_root, prepared_utk):
    model_path, result = frozen_gender_model
    ok(result, "-fz")
    report = json.loads(result.stdout)
    assert report["parity_ok"] is True
    assert report["float32"]["max_age_difference"] <= 0.5
    assert report["float32"]["max_gender_prob_difference"] <= 0.01
    float32, dynamic = artifact(model_path, ".float32.tflite"), artifact(model_path, ".dynamic.tflite")
    assert report["float32"]["path"] == str(float32) and report["dynamic"]["path"] == str(dynamic)
    assert float32.stat().st_size > 0 and 0 < dynamic.stat().st_size < float32.stat().st_size
    assert not list(repo_root.glob("*.tflite"))  # nothing written into the working directory

    from nets.inference.tflite import TFLiteModel

    tflite = TFLiteModel(float32)
    assert tflite.outputs == ["W1", "age", "gender"] and tflite.bins == 12
    rows = load_rows(prepared_utk, "utk")
    crops = face_crops(rows, range(0, len(rows), max(1, len(rows) // 8)))
    keras_out = as_float32(load_c3ae(model_path)).predict(as_inputs(crops), verbose=0)
    got = tflite.predict_crops(crops)
    assert got["age"].shape == (len(crops), 1)
    np.testing.assert_allclose(got["age"], keras_out["age"], atol=0.01)
    np.testing.assert_allclose(got["W1"], keras_out["W1"], atol=1e-4)
    np.testing.assert_allclose(got["gender"], keras_out["gender"], atol=1e-4)


def test_a_quantised_export_may_answer_the_other_gender_only_where_the_model_is_unsure():
    """The quick start's model failed -fz on one gender flipped at p = 0.50 among 48 check faces."""
    from nets.training.export import agreement

    expected = {"age": np.full((48, 1), 30.0), "gender": np.tile([[0.1, 0.9]], (48, 1))}
    expected["gender"][0] = [0.5, 0.5 + 1e-6]  # a coin toss to the model
    got = {"age": expected["age"] + 0.1, "gender": expected["gender"].copy()}
    got["gender"][0] = [0.51, 0.49]
    entry = agreement(got, expected, "dynamic")
    assert entry["parity_ok"] and entry["other_gender_where_sure"] == 0 and entry["same_gender"] < 0.995
    got["gender"][1] = [0.9, 0.1]  # a face the model is sure of
    assert not agreement(got, expected, "dynamic")["parity_ok"]
    assert not agreement(got, expected, "float32")["parity_ok"]  # float32: within 0.01 everywhere, as before


def test_freezing_the_shipped_model_again_keeps_its_export_and_card_hash(repo_root, tmp_path):
    """-fz on the shipped model rewrote its float32 export with other bytes (the converter's output is not
    byte-stable), so the card's SHA-256 no longer matched; an export that answers as the model does is kept."""
    from nets.training.export import export_tflite

    name = "c3ae_utk_asia_age_gender"
    for suffix in (".keras", ".float32.tflite"):
        shutil.copy(repo_root / "model" / (name + suffix), tmp_path / (name + suffix))
    before = (tmp_path / f"{name}.float32.tflite").read_bytes()
    report = export_tflite(tmp_path / f"{name}.keras", log=lambda m: None)
    assert report["float32"]["kept"] and report["float32"]["parity_ok"]
    assert (tmp_path / f"{name}.float32.tflite").read_bytes() == before


@pytest.mark.slow
def test_an_export_that_fails_parity_is_not_written_and_an_earlier_one_is_set_aside(trained_gender_model, tmp_path,
                                                                                   monkeypatch):
    """Every export fails here (the allowed difference is made negative). Before, an earlier
    NAME.dynamic.tflite stayed under its name beside the new model, taken for an export of it."""
    import nets.training.export

    model_path = tmp_path / "m.keras"
    shutil.copy(trained_gender_model, model_path)
    earlier = artifact(model_path, ".dynamic.tflite")
    earlier.write_bytes(b"an export of an earlier model")
    (tmp_path / "m.dynamic.tflite.stale").write_bytes(b"set aside before")
    monkeypatch.setattr(nets.training.export, "MAX_AGE_DIFFERENCE", -1.0)
    said = []
    report = nets.training.export.export_tflite(model_path, log=said.append)
    assert report["parity_ok"] is False and not report["float32"]["parity_ok"]
    assert not artifact(model_path, ".float32.tflite").exists() and not earlier.exists()
    assert not list(tmp_path.glob("*.tmp"))
    moved = tmp_path / "m.dynamic.tflite.stale2"
    assert moved.read_bytes() == b"an export of an earlier model"
    assert (tmp_path / "m.dynamic.tflite.stale").read_bytes() == b"set aside before"
    assert report["dynamic"]["earlier_file_set_aside"] == str(moved)
    assert said[1].endswith(f"FAILS, not written; the earlier file of that name is now {moved}")
    assert "earlier_file_set_aside" not in report["float32"]


@pytest.mark.slow
def test_an_export_of_a_kind_not_made_again_is_kept_only_if_it_is_of_this_model(trained_gender_model, repo_root,
                                                                               tmp_path):
    """-fz without --float16-export used to leave an earlier model's NAME.float16.tflite beside the
    new one (52.7 years where the model said 14.2), and the model card hashed it as this model's."""
    import nets.training.export

    model_path = tmp_path / "m.keras"
    shutil.copy(trained_gender_model, model_path)
    float16 = artifact(model_path, ".float16.tflite")
    said = []
    assert nets.training.export.export_tflite(model_path, float16=True, log=said.append)["parity_ok"]
    made = float16.read_bytes()
    report = nets.training.export.export_tflite(model_path, log=said.append)  # the same model: its float16 export stays
    assert float16.read_bytes() == made and "earlier_exports_set_aside" not in report
    shutil.copy(repo_root / "model" / "c3ae_utk_asia_age_gender.float32.tflite", float16)  # another model's
    said.clear()
    report = nets.training.export.export_tflite(model_path, log=said.append)
    assert not float16.exists() and report["earlier_exports_set_aside"] == [f"{float16}.stale"]
    assert said[-1] == (f"{float16} does not answer as this model does (an export of an earlier model?); "
                        f"it is now {float16}.stale")


@pytest.mark.slow
def test_an_export_onto_a_folder_of_its_name_leaves_no_half_done_file(trained_age_model, tmp_path):
    import nets.training.export

    model_path = tmp_path / "m.keras"
    shutil.copy(trained_age_model, model_path)
    artifact(model_path, ".float32.tflite").mkdir()
    with pytest.raises(OSError):
        nets.training.export.export_tflite(model_path, log=lambda message: None)
    assert not list(tmp_path.glob("*.tmp")) and artifact(model_path, ".float32.tflite").is_dir()

# --- model card -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_model_card_hashes_the_files_and_reproduces_the_evaluation(frozen_gender_model, run_python, prepared_utk,
                                                                   repo_root):
    import hashlib

    from nets.model_card import write_card

    model_path, _ = frozen_gender_model
    ok(run_python("nets/C3AE_expand.py", "-test", "-p", model_path, "--dataset", prepared_utk), "-test")
    card = write_card(model_path)  # the data and source it was trained on, from its state file
    assert card == read_json(artifact(model_path, ".card.json"))
    assert card["data"]["source"] == read_json(artifact(model_path, ".state.json"))["config"]["source"]
    assert set(card["files"]) == {model_path.name, artifact(model_path, ".split.json").name,
                                  artifact(model_path, ".float32.tflite").name,
                                  artifact(model_path, ".dynamic.tflite").name}
    for name, entry in card["files"].items():
        data = (model_path.parent / name).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    # fewer than 500 validation faces: the check faces are all of them, so they give -test's numbers
    evaluation = read_json(artifact(model_path, ".eval.json"))
    assert card["check_faces"]["faces"] == evaluation["faces"]
    assert card["check_faces"]["mae"] == pytest.approx(evaluation["mae"], abs=1e-3)
    assert [s["epochs"] for s in card["stages"]] == [2] and len(card["curves"]) == 2
    # an export of another model beside it is not taken into its card
    stale = artifact(model_path, ".float16.tflite")  # the fixture's folder is shared: removed in any case
    try:
        shutil.copy(artifact(model_path, ".float32.tflite"), stale)  # an export of this model: fine
        assert stale.name in write_card(model_path)["files"]
        shutil.copy(repo_root / "model" / "c3ae_utk_asia_age_gender.float32.tflite", stale)
        card_before = artifact(model_path, ".card.json").read_bytes()
        with pytest.raises(ValueError, match="float16.tflite does not answer as the model does"):
            write_card(model_path)
        assert artifact(model_path, ".card.json").read_bytes() == card_before
    finally:
        stale.unlink(missing_ok=True)


# --- --resume --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_resume_continues_at_epoch_3_with_the_optimizer_state(trained_age_model, prepared_utk, run_python,
                                                               tmp_path):
    import keras

    folder = tmp_path / "resumed"
    shutil.copytree(trained_age_model.parent, folder)
    model_path = folder / trained_age_model.name
    state = read_json(artifact(model_path, ".state.json"))
    steps = math.ceil(state["train_faces"] / 50)
    before = keras.models.load_model(artifact(model_path, ".last.keras"))
    assert int(before.optimizer.iterations) == 2 * steps
    split_before = artifact(model_path, ".split.json").read_bytes()

    result = ok(run_python("nets/C3AE.py", "--dataset", prepared_utk, "--source", "utk", "-se", "-white",
                           "--epochs", "3", "--resume", "-s", model_path), "--resume")
    assert "resuming" in result.stderr
    log = read_log(model_path)
    assert [row["epoch"] for row in log] == ["0", "1", "2"]
    state = read_json(artifact(model_path, ".state.json"))
    assert state["epochs_done"] == 3 and len(state["history"]) == 3 and state["history"][-1]["epoch"] == 3
    after = keras.models.load_model(artifact(model_path, ".last.keras"))
    assert int(after.optimizer.iterations) == 3 * steps  # Adam went on from step 2 * steps
    assert artifact(model_path, ".split.json").read_bytes() == split_before
    assert len(read_log(trained_age_model)) == 2  # the original run is untouched


@pytest.mark.slow
def test_resume_trusts_the_last_model_over_a_state_file_one_epoch_behind(trained_age_model, prepared_utk,
                                                                         run_python, tmp_path):
    folder = tmp_path / "interrupted"
    shutil.copytree(trained_age_model.parent, folder)
    model_path = folder / trained_age_model.name
    state_path = artifact(model_path, ".state.json")
    state = read_json(state_path)
    state["epochs_done"], state["history"] = 1, state["history"][:1]  # as if stopped after saving .last.keras
    state_path.write_text(json.dumps(state))

    result = ok(run_python("nets/C3AE.py", "--dataset", prepared_utk, "--source", "utk", "-se", "-white",
                           "--epochs", "3", "--resume", "-s", model_path), "--resume")
    assert "holds 2 epochs" in result.stderr and "resuming" in result.stderr
    state = read_json(state_path)
    assert state["epochs_done"] == 3 and [h["epoch"] for h in state["history"]] == [1, 3]


def test_each_epochs_state_file_counts_the_training_time_so_far(tmp_path):
    """A run stopped part-way leaves a state file that already holds its training time, so that
    --resume adds to it instead of forgetting the first part."""
    import time

    from nets.network.model import build_c3ae
    from nets.training.train import TrainConfig, _checkpoint_callback

    save_path = tmp_path / "m.keras"
    state = {"seconds": 100.0}  # from an earlier part of the run
    checkpoint = _checkpoint_callback(TrainConfig(save_path=str(save_path)), state)
    model = build_c3ae(se=True, white=True)
    model.compile(optimizer="adam", loss={"age": "mae", "W1": "kl_divergence"})  # as in training
    checkpoint.set_model(model)
    time.sleep(0.3)
    checkpoint.on_epoch_end(0, {"age_mae": 9.0, "val_age_mae": 8.0})
    saved = read_json(artifact(save_path, ".state.json"))
    assert saved["epochs_done"] == 1 and saved["best_epoch"] == 1
    assert 100.3 <= saved["seconds"] < 130
    time.sleep(0.2)
    checkpoint.on_epoch_end(1, {"age_mae": 8.0, "val_age_mae": 8.5})
    assert read_json(artifact(save_path, ".state.json"))["seconds"] >= saved["seconds"] + 0.2


# --- -fp16, --strategy mirrored --------------------------------------------------------------------

QUICK = ("--source", "utk", "--epochs", "1", "--steps-per-epoch", "2")


@pytest.mark.parametrize("name,words", [("m.h5", "give a name that ends in .keras"),
                                        ("m", "give a name that ends in .keras"),
                                        ("folder.keras", "is a folder; give a file name")])
def test_a_save_path_that_cannot_hold_a_model_is_refused_before_the_data_is_read(name, words, tiny_utk, capsys,
                                                                                 tmp_path):
    (tmp_path / "folder.keras").mkdir()
    code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-s", tmp_path / name], False, capsys)
    assert code == 2 and len(said) == 1 and words in said[0], said
    assert [p.name for p in tmp_path.iterdir()] == ["folder.keras"]  # nothing written beside it


def test_a_model_to_start_from_that_cannot_be_read_is_refused_before_a_split_is_saved(tiny_utk, capsys, tmp_path):
    out = tmp_path / "out" / "m.keras"
    for wrong in (tmp_path / "typo.keras", tiny_utk):  # missing; a folder
        code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-p", wrong, "-s", out], False, capsys)
        assert code == 2 and len(said) == 1 and str(wrong) in said[0], said
        assert not (tmp_path / "out").exists()  # no split saved, which a corrected run would have reused


def test_a_new_run_never_replaces_a_trained_model(tiny_utk, capsys, tmp_path):
    """A second run into the same -s used to replace the best and last models and the history
    without a word, so that not even --resume could bring them back."""
    from nets.network.model import build_c3ae

    model = tmp_path / "m.keras"
    build_c3ae(se=True, white=True).save(model)
    artifact(model, ".state.json").write_text(json.dumps({"epochs_done": 6, "best_val_mae": 4.0142}))
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-s", model], False, capsys)
    assert code == 2 and len(said) == 1, said
    assert "m.keras, m.state.json of a trained model (6 epochs, best validation MAE 4.014)" in said[0], said
    assert "add --resume" in said[0]
    # started from itself: the model it starts from would be replaced
    code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-p", model, "-s", model], False, capsys)
    assert code == 2 and said == [f"error: -s {model} is the -p model; a new run would replace the model it "
                                  "starts from: give another -s"], said
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # nothing written, not even a split


def test_resume_goes_on_with_the_settings_of_the_run_it_continues(tmp_path):
    """--resume with another -b used to skip epochs (the optimizer's step count divided by the new
    batch's steps) and -lr or --cosine-lr were ignored without a note."""
    from dataclasses import replace

    from nets.training.config import TrainConfig, TrainingError
    from nets.training.request import _resumable_state

    model = tmp_path / "m.keras"
    started = TrainConfig(save_path=str(model), batch_size=50, lr=0.002, cosine_lr=True, robust=True, epochs=6)
    state = {"config": json.loads(json.dumps(started.__dict__)), "epochs_done": 2}
    state_path, last_path = artifact(model, ".state.json"), artifact(model, ".last.keras")
    state_path.write_text(json.dumps(state))
    last_path.write_bytes(b"the last model")
    said = []
    resumed, cfg = _resumable_state(TrainConfig(save_path=str(model), batch_size=120, lr=1e-5, epochs=8,
                                                resume=True), state_path, last_path, said.append)
    assert resumed["epochs_done"] == 2
    assert (cfg.batch_size, cfg.lr, cfg.cosine_lr, cfg.robust, cfg.epochs) == (50, 0.002, True, True, 8)
    assert "-b 50 (not 120), -lr 0.002 (not 1e-05), --cosine-lr True (not False), --robust True (not False)" in said[0]
    assert "cosine schedule of the run's own --epochs 6" in said[1]
    said.clear()  # the same settings: nothing to say
    _resumable_state(replace(started, resume=True), state_path, last_path, said.append)
    assert said == []
    with pytest.raises(TrainingError, match="is an age run; resume it with nets/C3AE.py"):
        _resumable_state(replace(started, gender=True, resume=True), state_path, last_path, said.append)
    # without --epochs a resumed run goes on to its own epochs (the default 250 once ran a 4-epoch run to 250)
    from nets.training.cli import build_parser, config_from_args

    args = build_parser("C3AE", gender=False).parse_args(["-s", str(model), "--resume"])
    _, cfg = _resumable_state(config_from_args(args, False), state_path, last_path, said.append)
    assert cfg.epochs == 6
    new = build_parser("C3AE", gender=False).parse_args(["-s", str(tmp_path / "other.keras")])
    assert config_from_args(new, False).epochs is None  # check_request makes it the default, 250


def test_an_age_model_is_not_written_as_an_age_and_gender_model_untrained(tiny_utk, capsys, tmp_path):
    """--epochs 0 -p AGE_MODEL in nets/C3AE_expand.py used to write a model whose gender answers
    were those of a fresh head (0.51 on validation), with no word about it."""
    from nets.network.model import build_c3ae

    age_model = tmp_path / "age.keras"
    build_c3ae(se=True, white=True).save(age_model)
    out = tmp_path / "out" / "g.keras"
    code, _, said = run_trainer(["--dataset", tiny_utk, "--source", "utk", "--epochs", "0", "-se", "-white",
                                 "--mirror", "-p", age_model, "-s", out], True, capsys)
    assert code == 2 and len(said) == 1 and "is an age model" in said[0] and "--epochs N" in said[0], said
    assert not out.parent.exists()


def test_a_fine_tune_keeps_the_split_of_the_model_it_starts_from(tiny_utk, capsys, tmp_path):
    """A split of its own would validate a fine-tune on faces its -p model trained on (it did, once, here)."""
    first = tmp_path / "first" / "m.keras"
    code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-se", "-white", "--val-split", "0.5", "-s", first],
                                False, capsys)
    assert code == 0, said
    parent = read_json(artifact(first, ".split.json"))
    tuned = tmp_path / "tuned" / "m.keras"
    code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-p", first, "-s", tuned], False, capsys)
    assert code == 0, said
    assert any(n.startswith("note: the new split keeps the sides of") and str(first.parent) in n for n in said), said
    child = read_json(artifact(tuned, ".split.json"))
    assert set(child["val"]) == set(parent["val"]) and set(child["train"]) == set(parent["train"])
    assert read_json(artifact(tuned, ".state.json"))["config"]["split_from"] == str(artifact(first, ".split.json"))
    # a damaged split of the -p model: one sentence before the data is read, and nothing written
    artifact(first, ".split.json").write_text("{not json")
    again = tmp_path / "again" / "m.keras"
    code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-p", first, "-s", again], False, capsys)
    assert code == 2 and said[-1].startswith(f"error: {artifact(first, '.split.json')} is not a readable split file"), said
    assert "the -p model's own split" in said[-1] and not again.parent.exists()


def test_a_split_to_keep_that_is_not_a_split_is_refused_before_the_data_is_read(tiny_utk, capsys, tmp_path,
                                                                              repo_root):
    out = tmp_path / "out" / "m.keras"
    card = repo_root / "model" / "c3ae_utk_asia_age.card.json"
    for wrong, reason in ((card, "no lists of training and validation faces"), (repo_root / "model" /
                          "c3ae_utk_asia_age.keras", "codec can't decode"), (tmp_path / "typo.json", "no such file")):
        code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "--split-from", wrong, "-s", out], False, capsys)
        assert code == 2 and len(said) == 1 and said[0].startswith(f"error: {wrong} is not a readable split file"), said
        assert reason in said[0], said
        assert not out.parent.exists()


@pytest.mark.parametrize("flag,value,words", [("-b", "0", "must be 1 or more, not 0"),
                                              ("-b", "-5", "must be 1 or more, not -5"),
                                              ("-c", "-3", "must be 1 or more, not -3"),
                                              ("-d", "1.5", "must be between 0.0 and 1.0, not 1.5"),
                                              ("-lr", "0", "must be more than 0.0, not 0"),
                                              ("--steps-per-epoch", "0", "must be 1 or more, not 0"),
                                              ("-lr", "nan", "must be more than 0.0, not nan"),
                                              ("-lr", "inf", "must be more than 0.0, not inf"),
                                              ("-w", "-10", "must be 0.0 or more, not -10"),
                                              ("--loss-weights", "1 -10 30", "must be 0.0 or more, not -10"),
                                              ("--teacher-weight", "1.5", "must be between 0.0 and 1.0, not 1.5"),
                                              ("--width", "0", "must be 1 or more, not 0")])
def test_numbers_that_cannot_train_are_refused_with_the_flags(flag, value, words, capsys):
    """-lr nan and a negative loss weight were accepted (the NaN run left a split and a log behind)."""
    from nets.training.cli import build_parser

    with pytest.raises(SystemExit) as stop:
        build_parser("C3AE", gender=True).parse_args([flag, *value.split()])
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_numbers_that_cannot_train_are_refused_from_the_api_too():
    from nets.training.config import TrainConfig, TrainingError
    from nets.training.request import check_numbers

    for wrong, words in ((dict(lr=float("nan")), "-lr must be a number above 0, not nan"),
                         (dict(gender=True, loss_weights=(1.0, -10.0, 30.0)), "--loss-weights must be 0 or more"),
                         (dict(weight_factor=-1.0), "-w must be 0 or more, not -1"),
                         (dict(gender=True, loss_weights=(0.0, 0.0, 0.0)), "--loss-weights 0 0 0 trains nothing")):
        with pytest.raises(TrainingError, match=re.escape(words)):
            check_numbers(TrainConfig(epochs=1, **wrong))
    check_numbers(TrainConfig(epochs=1))


def test_training_without_a_save_path_writes_into_runs_not_the_shipped_models_folder():
    from nets.training.cli import build_parser

    for gender, name in ((False, "runs/c3ae_age.keras"), (True, "runs/c3ae_age_gender.keras")):
        assert build_parser("C3AE", gender=gender).parse_args([]).save_path == name


def test_a_second_run_into_the_same_save_path_is_refused_while_the_first_runs(tmp_path):
    """Two trainings started at once into one -s both ended with exit 0: the state file was one run's, the
    model, split and log the other's."""
    from nets.training.config import TrainingError
    from nets.training.request import RunLock

    save = tmp_path / "out" / "m.keras"
    with RunLock(save):
        assert (tmp_path / "out" / "m.lock").read_text() == str(os.getpid())
        other = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.');"
                                "from nets.training.request import RunLock\n"
                                f"with RunLock({str(save)!r}): pass"], cwd=REPO, capture_output=True, text=True)
        assert other.returncode == 1 and "another training run (process" in other.stderr, other.stderr
    assert not (tmp_path / "out" / "m.lock").exists()  # released
    # a lock left by a run that was killed is taken over, with a note
    (tmp_path / "out" / "m.lock").write_text("999999999")
    said = []
    with RunLock(save, said.append):
        pass
    assert said == [f"note: {tmp_path / 'out' / 'm.lock'} was left by a run that has ended; taking it over"]
    with pytest.raises(TrainingError, match="wait for it, or give another -s"):
        with RunLock(save):
            (tmp_path / "out" / "m.lock").write_text("1")  # process 1 always runs
            with RunLock(save):
                pass


def test_freeze_with_mirror_is_refused_rather_than_ignored(capsys, repo_root):
    model = repo_root / "model" / "c3ae_utk_asia_age.keras"
    code, stdout, said = run_trainer(["-fz", "--mirror", "-p", model], False, capsys)
    assert code == 2 and stdout == "" and len(said) == 1 and "--mirror does not change it" in said[0], said


def test_files_made_from_the_model_before_a_run_are_named(tmp_path):
    import os
    import time

    from nets.training.train import _note_stale_files

    model = tmp_path / "m.keras"
    old = [artifact(model, suffix) for suffix in (".float32.tflite", ".eval.json", ".mirror.eval.json", ".card.json")]
    for path in [model, *old, artifact(model, ".split.json")]:
        path.write_text("x")
        os.utime(path, (time.time() - 100, time.time() - 100))
    said = []
    _note_stale_files(model, time.time() - 50, said.append)
    assert said == []  # the best model did not change in this run
    model.write_text("a better model")
    _note_stale_files(model, time.time() - 50, said.append)
    assert len(said) == 1 and said[0].startswith(
        "note: m.card.json, m.eval.json, m.float32.tflite, m.mirror.eval.json were made from the model before"), said


@pytest.mark.slow
def test_fp16_training_gives_a_float32_finite_model(tiny_utk, run_python, tmp_path):
    out = tmp_path / "fp16.keras"
    ok(run_python("nets/C3AE.py", "--dataset", tiny_utk, *QUICK, "-b", "2", "-se", "-white", "-fp16", "-s", out),
       "-fp16")
    model = load_c3ae(out)
    assert any(layer.dtype_policy.name == "mixed_float16" for layer in model.get_layer("trunk").layers)
    crops = face_crops(load_rows(tiny_utk, "utk"), range(6))
    pred = model.predict(as_inputs(crops), verbose=0)
    for key, value in pred.items():
        assert value.dtype == np.float32, key
        assert np.all(np.isfinite(value)), key
    full = as_float32(model).predict(as_inputs(crops), verbose=0)
    np.testing.assert_allclose(full["age"], pred["age"], atol=0.5)



@pytest.mark.slow
def test_mirrored_strategy_on_two_cpu_devices(tiny_utk, run_python, tmp_path):
    out = tmp_path / "mirrored.keras"
    result = run_python("nets/C3AE.py", "--dataset", tiny_utk, *QUICK, "-b", "4",
                        "--strategy", "mirrored", "--cpu-devices", "2", "-s", out)
    ok(result, "--strategy mirrored")
    assert out.is_file()
    load_c3ae(out)


# --- safety and bad input --------------------------------------------------------------------------

def test_nan_loss_stops_training_and_writes_no_model(tiny_utk, capsys, tmp_path):
    out = tmp_path / "nan.keras"
    code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-b", "4", "-lr", "1e30", "-s", out], False, capsys)
    assert code != 0, said
    assert not out.exists() and not artifact(out, ".last.keras").exists()
    assert not list(tmp_path.glob("*.keras*"))  # not even a temporary file
    errors = [m for m in said if m.startswith("error:")]
    assert len(errors) == 1 and "nan" in errors[0].lower() and "nothing saved" in errors[0], said


def test_dataset_without_feathers_exits_2_with_one_line(run_python, messages, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no data here")
    result = run_python("nets/C3AE.py", "--dataset", empty, "--source", "utk", "-s", tmp_path / "out" / "m.keras")
    assert result.returncode == 2
    lines = messages(result.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:") and "no feather files" in lines[0] and str(empty) in lines[0]
    assert not (tmp_path / "out").exists()  # nothing is made for a run that cannot start


def test_corrupt_feather_chunk_is_reported_and_the_rest_used(prepared_utk, tmp_path):
    copy = tmp_path / "data"
    copy.mkdir()
    for path in prepared_utk.glob("utk_*.feather"):
        shutil.copy(path, copy / path.name)
    (copy / "utk_9.feather").write_bytes(np.random.default_rng(0).bytes(4096))
    pd.DataFrame({"age": [1.0, 2.0]}).to_feather(copy / "utk_8.feather")  # readable, lacks columns
    good = load_rows(prepared_utk, "utk")
    with pytest.warns(UserWarning) as record:
        rows = load_rows(copy, "utk")
    text = [str(w.message) for w in record]
    assert any("utk_9.feather" in t and "not a readable feather" in t for t in text), text
    assert any("utk_8.feather" in t and "lacks columns" in t for t in text), text
    assert len(rows) == len(good) and set(rows["key"]) == set(good["key"])


# --- benchmark ----------------------------------------------------------------------------------

def table_rows(text: str) -> dict:
    """The rows of the markdown tables a benchmark prints: {first cell: the other cells}."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and "---" not in line:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_training_benchmark_prints_both_feeds_with_rates(tiny_utk, run_python):
    result = ok(run_python("nets/benchmark.py", "train", "--dataset", tiny_utk, "--batch-size", "4",
                           "--steps", "3", "--rounds", "2"), "benchmark.py train")
    rows = table_rows(result.stdout)
    assert set(rows) >= {"in-memory tensors", "tf.data pipeline, first epoch (JPEG decode, crop, augment)",
                         "tf.data pipeline, later epochs (cached chips, crop, augment)"}, result.stdout
    for name, cells in rows.items():
        if name != "input":
            assert float(cells[0]) > 0, (name, cells)


@pytest.mark.slow
def test_zero_epochs_writes_the_parent_in_mirror_form_with_its_validation(trained_gender_model, prepared_utk,
                                                                           tmp_path, capsys):
    from nets.evaluation.evaluate import predict_rows
    from nets.network.model import with_mirror

    out = tmp_path / "converted.keras"
    code, _, said = run_trainer(["--mirror", "--epochs", "0", "-p", trained_gender_model, "--dataset", prepared_utk,
                                 "-s", out, "-se", "-white"], True, capsys)
    assert code == 0, said
    assert any(line.startswith("no training (--epochs 0): validation MAE") for line in said), said
    state = read_json(artifact(out, ".state.json"))
    assert state["epochs_done"] == 0 and state["pretrained_from"]["path"] == str(trained_gender_model)
    parent, converted = load_c3ae(trained_gender_model), load_c3ae(out)
    assert describe(converted)["mirror"] and not describe(parent)["mirror"]
    for ours, theirs in zip(with_mirror(converted, False).weights, parent.weights):
        np.testing.assert_array_equal(ours, theirs)
    split = make_or_load_split(prepared_rows(prepared_utk, True), artifact(out, ".split.json"), 0.2, 2019)
    mae = np.abs(predict_rows(with_mirror(parent), split.val)["age"].ravel() - split.val["age"].to_numpy()).mean()
    assert state["best_val_mae"] == pytest.approx(mae, abs=1e-3)
    # no optimizer state in it, unlike NAME.last.keras
    assert out.stat().st_size < artifact(trained_gender_model, ".last.keras").stat().st_size / 1.5


def test_zero_epochs_without_a_model_to_start_from_exits_2(run_python, messages, tmp_path):
    result = run_python("nets/C3AE.py", "--epochs", "0", "--mirror", "-s", tmp_path / "m.keras",
                        "--dataset", tmp_path / "nothing")
    assert result.returncode == 2
    said = messages(result.stderr)
    assert len(said) == 1 and said[0].startswith("error: --epochs 0") and "-p" in said[0], said
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_fine_tuning_from_a_model_built_otherwise_says_what_differs(trained_gender_model, prepared_utk, tmp_path,
                                                                    capsys):
    out = tmp_path / "o.keras"
    code, _, said = run_trainer(["-p", trained_gender_model, "--dataset", prepared_utk, "-s", out,
                                 "--epochs", "0", "-b", "8"], True, capsys)
    assert code == 0, said
    notes = [line for line in said if line.startswith("note: ") and "differs" in line]
    assert len(notes) == 1 and "se (True there, False here)" in notes[0] and "white (True there, False here)" in notes[0]
    # the trunk's convolutions and batch norms fit either way and are carried over; only SE starts fresh
    assert any("weights of 12 layers copied" in line for line in said), said
    parent, child = (load_c3ae(p).get_layer("trunk") for p in (trained_gender_model, out))
    for name in ("conv1", "conv3", "conv5", "bn2", "bn4"):
        for theirs, ours in zip(parent.get_layer(name).get_weights(), child.get_layer(name).get_weights()):
            np.testing.assert_array_equal(theirs, ours, err_msg=name)


@pytest.mark.slow
def test_model_benchmark_times_both_forms_of_the_shipped_model(run_python):
    result = ok(run_python("nets/benchmark.py", "model", "--repeats", "3"), "benchmark.py model")
    rows = table_rows(result.stdout)
    timed = {name: float(cells[0]) for name, cells in rows.items() if name.startswith(("Keras", "TFLite"))}
    assert len(timed) == 6 and all(t > 0 for t in timed.values()), result.stdout
    assert sum("(this file)" in name for name in timed) == 2, result.stdout


@pytest.mark.slow
def test_photo_benchmark_times_each_detector_on_both_sizes(run_python):
    result = ok(run_python("nets/benchmark.py", "photo", "--repeats", "2"), "benchmark.py photo")
    rows = {name: cells for name, cells in table_rows(result.stdout).items() if "x" in name.split(",")[0]}
    assert len(rows) == 6, result.stdout
    for name, (faces, detect_ms, prepare_ms, model_ms, total_ms, ratio) in rows.items():
        assert faces == "1", name
        assert min(float(detect_ms), float(prepare_ms), float(model_ms)) > 0, name
    assert all(rows[name][-1] == "1.0x" for name in rows if "(before" in name)
    # YuNet is many times faster than MTCNN, on either photo (a generous bound for a busy machine)
    assert all(float(rows[name][-1].rstrip("x")) > 2 for name in rows if "(default)" in name), result.stdout


def test_photo_benchmark_of_one_detector_times_only_its_path(run_python):
    result = ok(run_python("nets/benchmark.py", "photo", "--repeats", "2", "--detector", "yunet"), "benchmark.py photo")
    rows = {name: cells for name, cells in table_rows(result.stdout).items() if "x" in name.split(",")[0]}
    assert sorted(rows) == ["1920x1080, YuNet + c3ae_utk_asia_age_gender.float32.tflite (default)",
                            "512x512, YuNet + c3ae_utk_asia_age_gender.float32.tflite (default)"], result.stdout
    assert all(cells[0] == "1" and cells[-1] == "-" for cells in rows.values()), result.stdout  # no path before to compare


def test_cli_benchmark_runs_the_model_it_is_given(run_python, repo_root, tmp_path):
    other = tmp_path / "other.tflite"  # the age model's export: it answers no gender
    shutil.copy(repo_root / "model" / "c3ae_utk_asia_age.float32.tflite", other)
    result = ok(run_python("nets/benchmark.py", "cli", "--model", other, "--detector", "yunet", "--repeats", "4"),
                "benchmark.py cli --model")
    assert "nets/test.py -i PHOTO --json --no-show (YuNet + other.tflite)" in table_rows(result.stdout), result.stdout
    nothing = tmp_path / "not-a-model.tflite"
    nothing.write_bytes(b"not a model")
    result = run_python("nets/benchmark.py", "cli", "--model", nothing, "--detector", "yunet", "--repeats", "4")
    assert result.returncode != 0  # nets/test.py was run with it, and refused it


@pytest.mark.parametrize("what, flag", [("train", "--dataset"), ("preprocess", "--input")])
def test_benchmark_without_its_data_says_so_in_one_line(what, flag, run_python, messages, tmp_path):
    result = run_python("nets/benchmark.py", what, flag, tmp_path / "nothing here")
    assert result.returncode == 2, result.stderr
    said = messages(result.stderr)
    assert len(said) == 1 and said[0].startswith("error: ") and "nothing here" in said[0], said


def test_fine_tuning_records_the_model_it_started_from(trained_gender_model, tiny_utk, run_python, tmp_path):
    from nets.training.train import all_epochs, training_stages

    out = tmp_path / "tuned.keras"
    ok(run_python("nets/C3AE.py", "--dataset", tiny_utk, *QUICK, "-b", "4", "-se", "-white",
                  "-p", trained_gender_model, "-s", out), "-p")
    parent = read_json(artifact(trained_gender_model, ".state.json"))
    state = read_json(artifact(out, ".state.json"))
    assert state["pretrained_from"]["path"] == str(trained_gender_model)
    assert state["pretrained_from"]["best_val_mae"] == parent["best_val_mae"]
    assert state["pretrained_from"]["history"] == parent["history"]
    stages = training_stages(state)
    assert [s["config"]["command"] for s in stages] == [parent["config"]["command"], state["config"]["command"]]
    history, starts = all_epochs(state)
    assert [h["epoch"] for h in history] == [1, 2, 3] and starts == [2.5]
    assert history[2]["val_age_mae"] == state["history"][0]["val_age_mae"]


@pytest.mark.slow
def test_fine_tuning_with_mirror_builds_it_into_the_model_file(trained_gender_model, prepared_utk, tmp_path,
                                                                capsys):
    from nets.network.model import with_mirror

    out = tmp_path / "mirror.keras"
    code, _, said = run_trainer(["--mirror", "-p", trained_gender_model, "--dataset", prepared_utk, "-s", out,
                                 "--epochs", "1", "-lr", "1e-6", "-b", "16", "-se", "-white"], True, capsys)
    assert code == 0, said
    assert "weights of" in " ".join(said) and not any(line.startswith("note: ") and "differs" in line
                                                      for line in said), said
    model = load_c3ae(out)
    assert describe(model)["mirror"] and read_json(artifact(out, ".state.json"))["model"]["mirror"]
    assert describe(model)["params"] == describe(load_c3ae(trained_gender_model))["params"]
    crops = face_crops(load_rows(prepared_utk, "utk").iloc[:4])
    flipped = np.flip(crops, axis=3)
    got, got_flipped = (model.predict(as_inputs(c), verbose=0) for c in (crops, flipped))
    for key in ("age", "gender"):  # a face and its mirror image get the same answer
        np.testing.assert_allclose(got[key], got_flipped[key], atol=1e-4)
    plain = with_mirror(model, False)
    assert not describe(plain)["mirror"]
    by_hand = (plain.predict(as_inputs(crops), verbose=0)["age"] + plain.predict(as_inputs(flipped), verbose=0)["age"]) / 2
    np.testing.assert_allclose(got["age"], by_hand, atol=1e-4)


@pytest.mark.slow
def test_ema_validates_and_saves_the_averaged_weights(prepared_utk, tmp_path, capsys):
    import keras

    from nets.evaluation.evaluate import evaluate_model

    out = tmp_path / "ema.keras"
    code, _, said = run_trainer(["--ema", "--dataset", prepared_utk, "-s", out, "--epochs", "1", "-b", "16",
                                 "-se", "-white"], False, capsys)
    assert code == 0, said
    state = read_json(artifact(out, ".state.json"))
    assert state["config"]["ema"] is True and state["best_epoch"] == 1
    last = keras.models.load_model(artifact(out, ".last.keras"))  # raw weights, averages in the optimizer
    assert last.optimizer.use_ema
    best = load_c3ae(out)
    differ = [w.path for w, v in zip(best.trainable_weights, last.trainable_weights)
              if not np.allclose(np.asarray(w), np.asarray(v))]
    assert differ, "the best model should hold the averaged weights, not the last step's"
    val = make_or_load_split(load_rows(prepared_utk, "utk"), artifact(out, ".split.json"), 0.2, 2019).val
    logged = float(read_log(out)[0]["val_age_mae"])
    assert evaluate_model(best, val)["mae"] == pytest.approx(logged, abs=1e-3)  # what validation saw
    assert evaluate_model(as_float32(last), val)["mae"] != pytest.approx(logged, abs=1e-3)


@pytest.mark.slow
def test_a_teacher_gives_part_of_the_w1_and_gender_targets(trained_gender_model, prepared_utk):
    from nets.training.data import make_dataset
    from nets.network.contract import CROP_NAMES
    from nets.training.config import TrainConfig
    from nets.training.request import load_teacher
    from nets.training.train import with_teacher

    teacher = load_teacher(trained_gender_model, TrainConfig(gender=True))
    rows = prepared_rows(prepared_utk, gender=True).iloc[:12]
    plain = make_dataset(rows, 6, 12, True, training=False)
    for (crops, labels), (same_crops, mixed) in zip(plain, with_teacher(plain, teacher, 0.3)):
        answer = teacher.predict(crops, verbose=0)
        np.testing.assert_array_equal(crops[CROP_NAMES[0]], same_crops[CROP_NAMES[0]])
        np.testing.assert_array_equal(labels["age"], mixed["age"])  # the true age, untouched
        for key in ("W1", "gender"):
            np.testing.assert_allclose(mixed[key], 0.7 * labels[key] + 0.3 * answer[key], atol=1e-5)
            assert not np.allclose(mixed[key], labels[key], atol=1e-3)


@pytest.mark.slow
def test_training_with_a_teacher_records_it_and_refuses_one_that_cannot_teach(trained_gender_model,
                                                                                trained_age_model, tiny_utk,
                                                                                capsys, tmp_path):
    out = tmp_path / "student.keras"
    code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-b", "4", "-se", "-white", "-s", out,
                                 "--teacher", trained_gender_model, "--teacher-weight", "0.4"], False, capsys)
    assert code == 0, said
    assert any("learning from the teacher" in line and "0.4 of the W1 targets" in line for line in said), said
    state = read_json(artifact(out, ".state.json"))
    assert state["teacher"]["path"] == str(trained_gender_model)
    assert state["teacher"]["best_val_mae"] == read_json(artifact(trained_gender_model, ".state.json"))["best_val_mae"]
    assert state["config"]["teacher_weight"] == 0.4
    from nets.model_card import card_stages
    stages = card_stages(state)  # the model card names the teacher of the distilled stage
    assert stages[-1]["teacher"]["path"] == str(trained_gender_model)
    assert stages[-1]["teacher"]["best_val_mae"] == state["teacher"]["best_val_mae"]
    # resuming without the teacher would change what the run learns: refused
    code, _, said = run_trainer(["--dataset", tiny_utk, "--source", "utk", "--epochs", "2", "--steps-per-epoch", "2",
                                 "-b", "4", "-se", "-white", "-s", out, "--resume"], False, capsys)
    assert code == 2 and said[-1].endswith("resume it with the same"), said
    assert not any("split" in line for line in said), said  # refused before the data was read
    # an age + gender student needs a teacher that answers gender
    code, _, said = run_trainer(["--dataset", tiny_utk, *QUICK, "-b", "4", "-s", tmp_path / "g.keras",
                                 "--teacher", trained_age_model], True, capsys)
    assert code == 2 and len(said) >= 1 and "is an age model" in said[-1], said
    assert not any("split" in line for line in said), said  # refused before the data was read
    # a weight outside 0..1 is refused with the flag: test_numbers_that_cannot_train_are_refused_with_the_flags


def test_a_card_for_a_model_that_is_not_there_names_the_model(run_python, tmp_path):
    """model_card.py on a missing model said `no X.state.json`, sending people after the wrong file."""
    result = run_python("nets/model_card.py", tmp_path / "typo.keras")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: model file {tmp_path / 'typo.keras'} does not exist"
    export = run_python("nets/model_card.py", "model/c3ae_utk_asia_age_gender.float32.tflite")
    assert export.returncode != 0 and "give the model its exports were made from (c3ae_utk_asia_age_gender.keras)" \
        in export.stderr, export.stderr
