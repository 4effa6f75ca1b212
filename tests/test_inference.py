"""Inference: nets/test.py (-i, --dir, -v, -m, -o, --json, --no-show), nets.inference.predict.AgeEstimator on .keras and
.tflite, and the proof that training and inference cut a face into the same crops and predict the same."""
from __future__ import annotations

import json
import math
import re
import shutil

import cv2
import numpy as np
import pytest

from detect import load_image, prepare_faces
from nets.training.data import face_crops, load_rows
from nets.evaluation.evaluate import predict_rows
from nets.network.model import as_float32, load_c3ae
from nets.inference.predict import AgeEstimator
from nets.network.contract import artifact

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run_main(argv, capsys):
    """nets/test.py's main() in this process: (exit code, stdout, stderr lines)."""
    from nets.test import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def prepared_rows(prepared_utk):
    return load_rows(prepared_utk, "utk")


@pytest.fixture(scope="module")
def utk_face(prepared_rows, utk_dir):
    """An original UTKFace image whose face data preparation found (the middle row of the sample)."""
    path = utk_dir / prepared_rows["source_file"].iloc[len(prepared_rows) // 2]
    assert path.is_file()
    return path


# --- nets/test.py -i -------------------------------------------------------------------------------

def check_astronaut_line(stdout, said, model_path, gender, astronaut_path, detector, out_image):
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    face = json.loads(lines[0])
    assert face["file"] == "assets/astronaut.jpg"
    x1, y1, x2, y2 = face["box"]
    height, width = load_image(astronaut_path).shape[:2]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert isinstance(face["age"], float) and math.isfinite(face["age"]) and -5 < face["age"] < 130
    if gender:
        assert face["gender"] in ("F", "M") and 0.5 <= face["gender_prob"] <= 1.0
    else:
        assert face["gender"] is None and face["gender_prob"] is None
    assert len(face["distribution"]) == 12 and sum(face["distribution"]) == pytest.approx(1, abs=1e-3)
    # the CLI says what the API says
    api = AgeEstimator(model_path, detector=detector).predict(load_image(astronaut_path))
    assert len(api) == 1
    assert face["age"] == pytest.approx(api[0].age, abs=0.006)
    np.testing.assert_allclose(face["box"], api[0].box, atol=0.06)
    assert out_image.is_file() and cv2.imread(str(out_image)).shape[:2] == (height, width)
    assert any(str(out_image) in m for m in said)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["trained_gender_model", "trained_age_model"])
def test_cli_image_prints_one_json_line(fixture, request, run_python, messages, astronaut_path, detector,
                                        tmp_path):
    """With the age + gender model: gender F/M with its probability; with the age model: null."""
    model_path = request.getfixturevalue(fixture)
    out_image = tmp_path / "annotated.jpg"
    result = run_python("nets/test.py", "-m", model_path, "-i", "assets/astronaut.jpg", "--json",
                        "--no-show", "-o", out_image)
    assert result.returncode == 0, result.stderr[-3000:]
    check_astronaut_line(result.stdout, messages(result.stderr), model_path, fixture == "trained_gender_model",
                         astronaut_path, detector, out_image)


def test_cli_missing_image_path(trained_gender_model, capsys, tmp_path):
    missing = tmp_path / "nowhere.jpg"
    code, out, err = run_main(["-m", trained_gender_model, "-i", missing, "--json", "--no-show"], capsys)
    assert code != 0 and out == ""
    assert len(err) == 1 and err[0].startswith("error:") and str(missing) in err[0] and "no such file" in err[0]


@pytest.mark.parametrize("kind", ["text.txt", "text.keras", "missing.keras", "missing.tflite"])
def test_cli_model_file_of_the_wrong_kind_or_missing(kind, capsys, tmp_path, astronaut_path):
    model = tmp_path / kind
    if kind.startswith("text"):
        model.write_text("this is not a model\n")
    code, out, err = run_main(["-m", model, "-i", astronaut_path, "--no-show", "-o", tmp_path / "o.jpg"], capsys)
    assert code != 0 and out == ""
    assert len(err) == 1 and err[0].startswith("error:") and str(model) in err[0], err
    assert "Traceback" not in err[0]
    assert not (tmp_path / "o.jpg").exists()


# --- nets/test.py --dir ----------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_folder_reports_faces_and_a_summary_of_skips(trained_gender_model, run_python, messages,
                                                          astronaut_path, utk_face, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(astronaut_path, folder / "astronaut.jpg")
    shutil.copy(utk_face, folder / "sub" / "utk.jpg")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "x.jpg").write_bytes(b"")
    cv2.imwrite(str(folder / "gray.png"), np.full((240, 320, 3), 128, np.uint8))
    cv2.imwrite(str(folder / "astronaut.png"), load_image(astronaut_path))  # same stem as astronaut.jpg
    out = tmp_path / "annotated"

    result = run_python("nets/test.py", "-m", trained_gender_model, "--dir", folder, "--json", "--no-show",
                        "-o", out)
    assert result.returncode == 0, result.stderr[-3000:]
    faces = json_lines(result.stdout)
    assert len(faces) == 3, result.stdout
    assert sorted(face["file"] for face in faces) == sorted([str(folder / "astronaut.jpg"), str(folder / "astronaut.png"),
                                                             str(folder / "sub" / "utk.jpg")])
    assert all(face["gender"] in ("F", "M") for face in faces)
    said = messages(result.stderr)
    assert any("gray.png" in m and "no face found" in m for m in said), said
    summary = said[-1]
    assert summary.startswith("6 entries in 2 folders: 4 images, 3 faces; skipped:"), summary
    for reason in ("1 empty file (0 bytes)", "1 not a readable image", "1 no face found"):
        assert reason in summary, summary
    assert summary.endswith(f"3 annotated copies in {out}"), summary
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["astronaut.jpg", "astronaut.png", "sub/utk.jpg"]
    for name in written:
        assert load_image(out / name).shape == load_image(folder / name).shape


# --- .keras and .tflite through the API --------------------------------------------------------------

@pytest.mark.slow
def test_keras_and_tflite_files_give_the_same_answer(frozen_gender_model, detector, astronaut_path):
    model_path, result = frozen_gender_model
    assert result.returncode == 0, result.stderr[-3000:]
    image = load_image(astronaut_path)
    from_keras = AgeEstimator(model_path, detector=detector).predict(image)
    from_tflite = AgeEstimator(artifact(model_path, ".float32.tflite"), detector=detector).predict(image)
    assert len(from_keras) == len(from_tflite) == 1
    assert from_tflite[0].age == pytest.approx(from_keras[0].age, abs=0.05)
    assert from_tflite[0].gender == from_keras[0].gender
    assert from_tflite[0].gender_prob == pytest.approx(from_keras[0].gender_prob, abs=1e-3)
    assert from_tflite[0].box == from_keras[0].box


# --- THE consistency test: a face prepared for training and the same image seen by the API -----------

@pytest.fixture(scope="module")
def three_faces(prepared_rows, utk_dir, detector) -> list:
    """(feather row from dataset_proc.py, original image, prepare_faces of it here) for the first, middle
    and last prepared face."""
    n, out = len(prepared_rows), []
    for i in (0, n // 2, n - 1):
        row = prepared_rows.iloc[[i]].reset_index(drop=True)
        image = load_image(utk_dir / row["source_file"].iloc[0])
        faces = prepare_faces(image, detector)
        assert faces, row["source_file"].iloc[0]
        out.append((row, image, faces))
    return out


@pytest.mark.slow
def test_training_rows_and_api_give_identical_crops_and_predictions(trained_gender_model, three_faces, detector,
                                                                    tmp_path):
    """The row that data preparation makes of a face (face_to_row, a feather chunk, read back as training
    reads it) gives exactly the API's crops and predictions. The rows are made in this process: the
    detector's float rounding depends on TensorFlow's thread count (next test)."""
    from preprocessing.schema import face_to_row, rows_to_frame

    estimator = AgeEstimator(trained_gender_model, detector=detector)
    model = as_float32(load_c3ae(trained_gender_model))
    for k, (prepared, image, faces) in enumerate(three_faces):
        name, age, gender = prepared[["source_file", "age", "gender"]].iloc[0]
        folder = tmp_path / f"row{k}"
        folder.mkdir()
        rows_to_frame([face_to_row(faces[0], name, age, gender, len(faces), detector.name)]).to_feather(folder / "utk_0.feather")
        row = load_rows(folder, "utk")
        api_crops = faces[0].crops()
        train_crops = face_crops(row)[0]
        assert api_crops.dtype == train_crops.dtype == np.uint8 and api_crops.shape == (3, 64, 64, 3)
        assert api_crops.tobytes() == train_crops.tobytes(), f"crops differ for {name}"
        assert row["image"].iloc[0] == faces[0].chip_jpeg

        predicted = estimator.predict(image)[0]
        expected = predict_rows(model, row)  # what evaluation computes from the feather row
        assert predicted.age == pytest.approx(float(expected["age"][0, 0]), abs=1e-5)
        np.testing.assert_allclose(predicted.distribution, expected["W1"][0], atol=1e-6)
        k = int(np.argmax(expected["gender"][0]))
        assert predicted.gender == "FM"[k]
        assert predicted.gender_prob == pytest.approx(float(expected["gender"][0, k]), abs=1e-6)


@pytest.mark.slow
def test_rows_from_dataset_proc_workers_match_the_api_to_float_rounding(trained_gender_model, three_faces,
                                                                         detector):
    """dataset_proc.py's worker processes run TensorFlow on one thread each, this process on several, so
    MTCNN's boxes and landmarks may differ in the last float digits; the chips and crops then differ by a
    grey level or two in a few pixels, and the predicted age by far less than a year."""
    estimator = AgeEstimator(trained_gender_model, detector=detector)
    model = as_float32(load_c3ae(trained_gender_model))
    for row, image, faces in three_faces:
        name = row["source_file"].iloc[0]
        np.testing.assert_allclose(faces[0].box, row[["src_x1", "src_y1", "src_x2", "src_y2"]].to_numpy()[0],
                                   atol=1e-3, err_msg=name)
        difference = np.abs(faces[0].crops().astype(int) - face_crops(row)[0].astype(int))
        assert difference.max() <= 3 and np.mean(difference > 0) < 0.01, (name, difference.max(),
                                                                         np.mean(difference > 0))
        predicted = estimator.predict(image)[0]
        expected = predict_rows(model, row)
        assert predicted.age == pytest.approx(float(expected["age"][0, 0]), abs=0.1), name


# --- nets/test.py -v -------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_video_file(trained_gender_model, run_python, messages, astronaut_path, utk_face, tmp_path):
    astronaut = load_image(astronaut_path)
    height, width = astronaut.shape[:2]
    utk = cv2.resize(load_image(utk_face), (width, height), interpolation=cv2.INTER_LINEAR)
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    assert writer.isOpened()
    for k in range(10):
        writer.write(astronaut if k < 5 else utk)
    writer.release()

    annotated = tmp_path / "out.mp4"
    result = run_python("nets/test.py", "-m", trained_gender_model, "-v", video, "--no-show", "--json",
                        "-o", annotated)
    assert result.returncode == 0, result.stderr[-3000:]
    faces = json_lines(result.stdout)
    assert all("frame" in face and face["file"] == str(video) and face["track"] >= 0 for face in faces)
    assert sorted({face["frame"] for face in faces}) == list(range(10)), [f["frame"] for f in faces]
    said = messages(result.stderr)
    assert re.search(rf"^10 frames, {len(faces)} faces, \d+(\.\d+)? frames per second", said[-1]), said

    capture = cv2.VideoCapture(str(annotated))
    assert capture.isOpened()
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape[:2] == (height, width)
        frames += 1
    capture.release()
    assert frames == 10


def test_cli_video_missing_file(trained_gender_model, capsys, tmp_path):
    missing = tmp_path / "missing.mp4"
    code, out, err = run_main(["-m", trained_gender_model, "-v", missing, "--no-show", "--json"], capsys)
    assert code != 0 and out == ""
    assert len(err) == 1 and err[0].startswith("error:") and str(missing) in err[0] and "does not exist" in err[0]


def test_cli_camera_that_cannot_be_opened(trained_gender_model, capsys):
    code, out, err = run_main(["-m", trained_gender_model, "-v", "9", "--no-show", "--json"], capsys)
    assert code != 0 and out == ""
    assert err and "cannot open camera" in err[-1] and err[-1].startswith("error:"), err
