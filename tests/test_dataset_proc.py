"""preprocessing/dataset_proc.py end to end, as a subprocess with the real (default) detector."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import png_claiming
from detect import load_image, triple_boxes
from preprocessing.schema import COLUMNS, TRIPLE_COLUMNS

UTK_LABEL = re.compile(r"^(\d+)_([01])_")


def chunk_paths(dest: Path, source: str) -> list[Path]:
    """`<source>_<k>.feather` in chunk order (what a reader of the data set would load)."""
    paths = [p for p in dest.glob(f"{source}_*.feather") if p.stem.rsplit("_", 1)[-1].isdigit()]
    return sorted(paths, key=lambda p: int(p.stem.rsplit("_", 1)[-1]))


def read_rows(dest: Path, source: str) -> pd.DataFrame:
    frames = [pd.read_feather(p) for p in chunk_paths(dest, source)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def read_skipped(dest: Path, source: str) -> list[tuple[str, str]]:
    with open(dest / f"{source}_skipped.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "reason"]
    return [tuple(r) for r in rows[1:]]


def ok(result):
    """Assert a CLI run succeeded; return its summary as printed on stdout."""
    assert result.returncode == 0, f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


def utk_labels(name: str) -> tuple[float, int]:
    match = UTK_LABEL.match(Path(name).name)
    assert match, name
    return float(match.group(1)), 1 - int(match.group(2))


# --- a UTKFace sample, once per module -------------------------------------------------------------

@pytest.fixture(scope="module")
def utk_run(utk_sample, tmp_path_factory, run_cli):
    dest = tmp_path_factory.mktemp("utk_out")
    printed = ok(run_cli("--source", "utk", "-i", utk_sample, "-d", dest))
    summary = json.loads((dest / "utk_summary.json").read_text())
    return SimpleNamespace(dest=dest, input=utk_sample, printed=printed, summary=summary,
                           rows=read_rows(dest, "utk"), skipped=read_skipped(dest, "utk"))


@pytest.mark.slow
def test_utk_feather_files_follow_the_schema(utk_run):
    paths = chunk_paths(utk_run.dest, "utk")
    assert [p.name for p in paths] == ["utk_0.feather"]  # 100 images < 5000 per chunk
    frame = pd.read_feather(paths[0])
    assert list(frame.columns) == COLUMNS
    assert frame["age"].dtype == np.float32 and frame["score"].dtype == np.float32
    assert frame["gender"].dtype == np.int8 and frame["faces"].dtype == np.int8
    assert frame["left_eye_x"].dtype == np.float32 and frame["yaw"].dtype == np.float32
    assert all(isinstance(v, bytes) for v in frame["image"])
    assert (utk_run.dest / "utk_0.meta.json").is_file()
    assert not list(utk_run.dest.glob("*.tmp"))


@pytest.mark.slow
def test_utk_faces_found_and_labels_from_names(utk_run):
    rows, summary = utk_run.rows, utk_run.summary
    names = sorted(p.name for p in utk_run.input.iterdir())
    assert summary["images_processed"] == len(names) == 100
    assert len(rows) >= 0.95 * len(names), summary["skip_reasons"]
    assert rows["source_file"].is_unique
    assert set(rows["source_file"]) <= set(names)
    assert list(rows["source_file"]) == sorted(rows["source_file"])  # input order is kept
    for name, age, gender in zip(rows["source_file"], rows["age"], rows["gender"]):
        assert (age, gender) == utk_labels(name), name
    assert set(rows["gender"]) == {0, 1}
    assert rows["age"].nunique() > 10
    assert (rows["faces"] >= 1).all() and (rows["score"] > 0.6).all()


@pytest.mark.slow
def test_utk_chips_decode_and_carry_the_geometry(utk_run):
    rows = utk_run.rows
    for jpeg in rows["image"]:
        chip = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
        assert chip is not None and chip.shape == (256, 256, 3) and chip.dtype == np.uint8
    # eyes level at y = 102.4, their midpoint at x = 128, on every chip
    np.testing.assert_allclose(rows["left_eye_y"], 102.4, atol=0.01)
    np.testing.assert_allclose(rows["right_eye_y"], 102.4, atol=0.01)
    np.testing.assert_allclose((rows["left_eye_x"] + rows["right_eye_x"]) / 2, 128, atol=0.01)
    inter_ocular = rows["right_eye_x"] - rows["left_eye_x"]
    assert inter_ocular.between(50, 100).all()
    # the stored triple box is the one computed from the stored box and nose
    for _, row in rows.iterrows():
        box = row[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy(np.float32)
        nose = row[["nose_x", "nose_y"]].to_numpy(np.float32)
        np.testing.assert_allclose(row[TRIPLE_COLUMNS].to_numpy(np.float32).reshape(3, 4),
                                   triple_boxes(box, nose), atol=1e-3)
        # and the face box in the source image lies on the 200x200 UTK chip (give or take)
        src = row[["src_x1", "src_y1", "src_x2", "src_y2"]].to_numpy(np.float32)
        assert src[0] < src[2] and src[1] < src[3]
        assert -60 < src[0] < 200 and 0 < src[2] < 260


@pytest.mark.slow
def test_utk_summary_and_skipped_csv(utk_run):
    summary, rows, skipped = utk_run.summary, utk_run.rows, utk_run.skipped
    assert utk_run.printed == summary  # stdout carries the same JSON as utk_summary.json
    assert summary["source"] == "utk"
    assert summary["inputs_seen"] == 100
    assert summary["faces_written"] == len(rows)
    assert summary["skipped"] == sum(summary["skip_reasons"].values()) == len(skipped)
    assert summary["faces_written"] + summary["skipped"] == summary["inputs_seen"]
    assert summary["face_rate"] == pytest.approx(len(rows) / summary["images_processed"], abs=1e-4)
    assert summary["chunks"] == 1 and summary["chunks_reused"] == 0 and summary["workers"] == 1
    assert (utk_run.dest / "utk_skipped.csv").is_file()
    written = set(rows["source_file"])
    for path, reason in skipped:
        assert Path(path).name not in written and reason


# --- bad inputs ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_bad_inputs_are_counted_and_do_not_stop_the_run(tmp_path, run_cli, astronaut_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "20_1_0_empty.jpg").write_bytes(b"")
    (folder / "25_0_0_text.jpg").write_text("this is text, not a JPEG\n")
    cv2.imwrite(str(folder / "30_0_0_x.jpg"), np.full((300, 300, 3), 128, np.uint8))
    (folder / "notes.txt").write_text("no label in this name\n")
    (folder / "40_0_0_real_a.jpg").symlink_to(astronaut_path)
    (folder / "41_1_0_real_b.jpg").symlink_to(astronaut_path)
    (folder / "sub").mkdir()
    (folder / "sub" / "42_0_0_real_c.jpg").symlink_to(astronaut_path)
    (folder / os.fsdecode(b"43_0_0_caf\xe9.jpg")).symlink_to(astronaut_path)  # a Latin-1 name: not UTF-8
    (folder / "44_0_0_gone.jpg").symlink_to(tmp_path / "moved away.jpg")
    # a decompression bomb: under 100 bytes that claim 60000x60000 pixels (it ended the run with a traceback
    # that named no file, and did again on every re-run)
    (folder / "50_0_0_bomb.png").write_bytes(png_claiming(60000, 60000))
    dest = tmp_path / "out"

    # chunk 0 holds the three unreadable/faceless images, chunk 1 the three real ones, chunk 2 the bomb
    result = run_cli("--source", "utk", "-i", folder, "-d", dest, "--chunk-size", 3, workers=500)
    summary = ok(result)
    assert summary["inputs_seen"] == 10
    assert summary["images_processed"] == 7
    assert summary["faces_written"] == 3
    assert summary["skipped"] == 7
    assert summary["chunks"] == 3
    # --workers 500 started 500 processes (11 GB) for 3 images: no more than the cores are used
    assert summary["workers"] == min(os.cpu_count(), 7)
    said = result.stderr.strip().splitlines()
    assert f"note: --workers 500: {summary['workers']} used" in said[-2], said
    assert said[-1].startswith("3 faces from 10 inputs (7 skipped) in "), said  # the numbers add up
    assert summary["skip_reasons"] == {
        "empty file (0 bytes)": 1,
        "not a readable image": 1,
        "no face found": 1,
        "too large, over the limit of 50 MP": 1,
        "file name has no AGE_GENDER_ label": 1,
        "file name is not valid UTF-8 (rename it)": 1,
        "broken link": 1,
    }
    skipped = {Path(p).name: reason for p, reason in read_skipped(dest, "utk")}
    assert skipped == {"20_1_0_empty.jpg": "empty file (0 bytes)",
                       "25_0_0_text.jpg": "not a readable image",
                       "30_0_0_x.jpg": "no face found",
                       "notes.txt": "file name has no AGE_GENDER_ label",
                       "43_0_0_caf\ufffd.jpg": "file name is not valid UTF-8 (rename it)",
                       "44_0_0_gone.jpg": "broken link",
                       "50_0_0_bomb.png": "too large, over the limit of 50 MP"}

    empty = pd.read_feather(dest / "utk_0.feather")  # a chunk without faces is still a valid file
    assert len(empty) == 0 and list(empty.columns) == COLUMNS
    rows = read_rows(dest, "utk")
    assert list(rows["source_file"]) == ["40_0_0_real_a.jpg", "41_1_0_real_b.jpg",
                                         "sub/42_0_0_real_c.jpg"]
    assert list(rows["age"]) == [40.0, 41.0, 42.0] and list(rows["gender"]) == [1, 0, 1]


@pytest.mark.parametrize("source,name", [("utk", "nope"), ("afad", "AFAD-Full"),
                                         ("wiki", "wiki_crop"), ("csv", "LABELS.csv")])
def test_missing_input_exits_with_a_one_line_message(tmp_path, run_cli, source, name):
    missing = tmp_path / name
    result = run_cli("--source", source, "-i", missing, "-d", tmp_path / "out")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0] and "Traceback" not in result.stderr
    assert result.stdout.strip() == ""


def one_error_line(result) -> str:
    """Assert a CLI run was refused with exit 2 and one line on stderr; return that line."""
    assert result.returncode == 2, f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout.strip() == ""
    return lines[0]



def test_a_destination_that_cannot_be_written_is_one_sentence(tmp_path, astronaut_path, repo_root, as_a_user):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "40_0_0_a.jpg").symlink_to(astronaut_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for dest in (locked, locked / "new"):
        result = subprocess.run([*as_a_user, sys.executable, "preprocessing/dataset_proc.py", "--source", "utk",
                                 "-i", str(folder), "-d", str(dest), "--workers", "1", "--no-progress"],
                                cwd=repo_root, capture_output=True, text=True, timeout=300)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: {dest}") and "permission denied" in lines[0], lines
    assert list(locked.iterdir()) == []

@pytest.mark.parametrize("size", ["0", "-5"])
def test_min_face_size_below_the_smallest_is_refused(tmp_path, run_cli, astronaut_path, size):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "40_0_0_a.jpg").symlink_to(astronaut_path)
    line = one_error_line(run_cli("--source", "utk", "-i", folder, "-d", tmp_path / "out",
                                  "--min-face-size", size, workers=2))
    assert "smallest face size" in line and size in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_limit_below_one_is_refused(tmp_path, run_cli, astronaut_path, limit):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "40_0_0_a.jpg").symlink_to(astronaut_path)
    (folder / "41_0_0_b.jpg").symlink_to(astronaut_path)
    line = one_error_line(run_cli("--source", "utk", "-i", folder, "-d", tmp_path / "out",
                                  "--limit", limit))
    assert "limit" in line and limit in line
    assert not (tmp_path / "out").exists()


def test_input_without_images_is_refused_and_nothing_written(tmp_path, run_cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_error_line(run_cli("--source", "utk", "-i", empty, "-d", tmp_path / "out"))
    assert line == f"error: no images to prepare in {empty}"
    (empty / "notes.txt").write_text("no label in this name\n")  # only inputs without a label
    line = one_error_line(run_cli("--source", "utk", "-i", empty, "-d", tmp_path / "out"))
    assert str(empty) in line and "notes.txt" in line and "AGE_GENDER" in line
    assert not (tmp_path / "out").exists()


def test_help_states_each_default_once(monkeypatch):
    from preprocessing.dataset_proc import build_parser

    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    text = build_parser().format_help()
    assert "(default: None)" not in text
    options = re.split(r"\n  (?=-)", text.split("options:", 1)[1])[1:]
    assert len(options) == 11, options
    for option in options:
        expected = 0 if option.lstrip().startswith(("-h", "--source")) else 1
        assert option.count("default") == expected, option


# --- what is already in dest -----------------------------------------------------------------------

def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def prepared_six(tmp_path_factory, run_cli, astronaut_path):
    """Six labelled images (four faces, two blank) prepared in chunks of two: (input, dest, args)."""
    root = tmp_path_factory.mktemp("six")
    folder = root / "in"
    folder.mkdir()
    for age in (30, 31, 33, 35):
        (folder / f"{age}_0_0_face.jpg").symlink_to(astronaut_path)
    for age in (32, 34):
        cv2.imwrite(str(folder / f"{age}_1_0_blank.jpg"), np.full((120, 120, 3), 90, np.uint8))
    dest = root / "out"
    args = ("--source", "utk", "-i", folder, "-d", dest, "--chunk-size", 2)
    summary = ok(run_cli(*args))
    assert summary["chunks"] == 3 and summary["faces_written"] == 4
    return SimpleNamespace(input=folder, dest=dest, args=args)


@pytest.fixture
def earlier_run(prepared_six, tmp_path):
    """A copy of prepared_six's dest to run into again: (input, dest, args, files before)."""
    dest = tmp_path / "out"
    shutil.copytree(prepared_six.dest, dest)
    args = ("--source", "utk", "-i", prepared_six.input, "-d", dest, "--chunk-size", 2)
    return SimpleNamespace(input=prepared_six.input, dest=dest, args=args, files=snapshot(dest))


@pytest.mark.parametrize("change", ["--limit 3", "empty input", "other input", "--chunk-size 3",
                                    "--min-face-size 30", "--detector mtcnn", "--multi-face skip",
                                    "images added"])
def test_another_command_into_the_same_dest_is_refused(earlier_run, tmp_path, run_cli, astronaut_path,
                                                       change):
    args = list(earlier_run.args)
    if change == "empty input":
        args[3] = tmp_path / "empty"
        args[3].mkdir()
    elif change == "other input":  # the same names in another folder
        args[3] = shutil.copytree(earlier_run.input, tmp_path / "copy", symlinks=True)
    elif change != "images added":
        args += change.split()
    added = earlier_run.input / "36_0_0_face.jpg"
    if change == "images added":  # to the module's input folder, for this test only
        added.symlink_to(astronaut_path)
    try:
        line = one_error_line(run_cli(*args))
    finally:
        added.unlink(missing_ok=True)
    assert snapshot(earlier_run.dest) == earlier_run.files  # nothing deleted, nothing rewritten
    if change == "empty input":
        assert str(tmp_path / "empty") in line
        return
    assert line.startswith(f"error: {earlier_run.dest} already holds utk data of 6 images made with "
                           f"-i {earlier_run.input} --chunk-size 2 --detector yunet --min-face-size 20 ")
    assert line.endswith(f"use another -d, or remove {earlier_run.dest / 'utk'}_* yourself to start over")
    differs = {"other input": "-i", "images added": "the images or labels read from the input"}
    assert f"differs in {differs.get(change, change.split()[0])};" in line



def test_the_same_input_through_a_link_is_told_how_to_continue(earlier_run, run_cli, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(earlier_run.input)
    args = list(earlier_run.args)
    args[3] = link
    line = one_error_line(run_cli(*args))
    assert line == (f"error: {earlier_run.dest} holds utk data made from the same folder spelled {earlier_run.input} "
                    f"(here {link}); give -i {earlier_run.input} to continue that run")
    assert snapshot(earlier_run.dest) == earlier_run.files

def test_chunks_without_a_run_record_are_refused(earlier_run, run_cli):
    (earlier_run.dest / "utk_run.json").unlink()  # as an older version left them
    del earlier_run.files["utk_run.json"]
    line = one_error_line(run_cli(*earlier_run.args))
    assert "no record of its inputs (utk_run.json)" in line and str(earlier_run.dest) in line
    assert snapshot(earlier_run.dest) == earlier_run.files


def test_the_same_command_reuses_every_chunk(earlier_run, run_cli):
    summary = ok(run_cli(*earlier_run.args))
    assert summary["chunks"] == 3 and summary["chunks_reused"] == 3 and summary["faces_written"] == 4
    after = snapshot(earlier_run.dest)
    for name in ("utk_0.feather", "utk_1.feather", "utk_2.feather", "utk_run.json"):
        assert after[name] == earlier_run.files[name]


def test_a_run_record_alone_does_not_block_a_new_command(tmp_path, run_cli, astronaut_path):
    """A run stopped before its first chunk leaves only its record: nothing to lose, so no refusal."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "40_0_0_a.jpg").symlink_to(astronaut_path)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "utk_run.json").write_text(json.dumps({"source": "utk", "input": "/elsewhere", "limit": 9}))
    (dest / "wiki_0.feather").write_bytes(b"another source's chunk")  # not this source's business
    summary = ok(run_cli("--source", "utk", "-i", folder, "-d", dest))
    assert summary["faces_written"] == 1
    assert json.loads((dest / "utk_run.json").read_text())["input"] == str(folder)
    assert (dest / "wiki_0.feather").read_bytes() == b"another source's chunk"


# --- resume ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_resume_redoes_only_missing_or_damaged_chunks(utk_sample, tmp_path, run_cli, link_files):
    folder = link_files(sorted(utk_sample.iterdir())[:30], tmp_path / "in")
    dest = tmp_path / "out"
    args = ("--source", "utk", "-i", folder, "-d", dest, "--chunk-size", 10)

    first = ok(run_cli(*args))
    assert first["chunks"] == 3 and first["chunks_reused"] == 0
    first_rows = read_rows(dest, "utk")
    assert len(first_rows) == first["faces_written"] >= 28
    chunk_bytes = {k: (dest / f"utk_{k}.feather").read_bytes() for k in range(3)}
    chunk_files = {k: list(pd.read_feather(dest / f"utk_{k}.feather")["source_file"])
                   for k in range(3)}

    # chunk 1 never finished; interrupted writes left .tmp files behind (holding other rows)
    (dest / "utk_1.feather").unlink()
    (dest / "utk_1.meta.json").unlink()
    (dest / "utk_1.feather.tmp").write_bytes(chunk_bytes[0])
    (dest / "utk_1.meta.json.tmp").write_text("{not json")
    (dest / "utk_2.feather.tmp").write_bytes(chunk_bytes[0])

    second = ok(run_cli(*args))
    assert second["chunks"] == 3
    assert second["chunks_reused"] == second["chunks"] - 1
    assert second["faces_written"] == first["faces_written"]
    assert second["skip_reasons"] == first["skip_reasons"]
    rows = read_rows(dest, "utk")
    assert len(rows) == len(first_rows)
    assert rows["source_file"].is_unique
    assert list(rows["source_file"]) == list(first_rows["source_file"])
    np.testing.assert_array_equal(rows["age"], first_rows["age"])
    assert list(pd.read_feather(dest / "utk_1.feather")["source_file"]) == chunk_files[1]
    for k in (0, 2):  # finished chunks are not rewritten
        assert (dest / f"utk_{k}.feather").read_bytes() == chunk_bytes[k]
    assert json.loads((dest / "utk_1.meta.json").read_text())["faces"] == len(chunk_files[1])

    # A damaged chunk (size differs from its record) is redone.
    data = (dest / "utk_0.feather").read_bytes()
    (dest / "utk_0.feather").write_bytes(data[: len(data) // 2])
    third = ok(run_cli(*args))
    assert third["chunks"] == 3 and third["chunks_reused"] == 2
    assert (dest / "utk_0.feather").read_bytes() == chunk_bytes[0]
    rows = read_rows(dest, "utk")
    assert list(rows["source_file"]) == chunk_files[0] + chunk_files[1] + chunk_files[2]
    assert third["faces_written"] == len(rows)

    # So is one damaged in place, its size unchanged (a disk or a copy gone wrong); it was reused before.
    damaged = bytearray(chunk_bytes[2])
    damaged[len(damaged) // 2:len(damaged) // 2 + 3000] = bytes(3000)
    (dest / "utk_2.feather").write_bytes(bytes(damaged))
    fourth = ok(run_cli(*args))
    assert fourth["chunks_reused"] == 2 and (dest / "utk_2.feather").read_bytes() == chunk_bytes[2]


# --- several workers -------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_workers_give_the_same_rows(utk_run, tmp_path, run_cli, link_files):
    names = sorted(p.name for p in utk_run.input.iterdir())[:20]
    folder = link_files([utk_run.input / n for n in names], tmp_path / "in")
    dest = tmp_path / "out"
    summary = ok(run_cli("--source", "utk", "-i", folder, "-d", dest, "--chunk-size", 8,
                         workers=2))
    assert summary["workers"] == 2 and summary["chunks"] == 3
    rows = read_rows(dest, "utk")
    single = utk_run.rows[utk_run.rows["source_file"].isin(names)].reset_index(drop=True)
    assert list(rows["source_file"]) == list(single["source_file"])  # same faces, same order
    np.testing.assert_array_equal(rows["age"], single["age"])
    np.testing.assert_array_equal(rows["gender"], single["gender"])
    geometry = ["src_x1", "src_y1", "src_x2", "src_y2", "nose_x", "nose_y", "mouth_left_x"]
    np.testing.assert_allclose(rows[geometry].to_numpy(), single[geometry].to_numpy(), atol=0.5)


def test_workers_leave_ctrl_c_to_the_main_process():
    from preprocessing.build import Settings, start_pool

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even if CI ignores it
    try:
        pool = start_pool(2, Settings())
        try:
            handlers = pool.map(signal.getsignal, [signal.SIGINT] * 4, chunksize=1)
        finally:
            pool.terminate()
            pool.join()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the main process still stops
    finally:
        signal.signal(signal.SIGINT, before)
    assert set(handlers) == {signal.SIG_IGN}, handlers


@pytest.mark.slow
def test_ctrl_c_with_two_workers_stops_and_keeps_the_finished_chunks(utk_sample, tmp_path, repo_root):
    dest = tmp_path / "out"
    cmd = [sys.executable, "preprocessing/dataset_proc.py", "--source", "utk", "-i", str(utk_sample), "-d", str(dest),
           "--workers", "2", "--chunk-size", "8", "--no-progress"]
    # a terminal's Ctrl-C reaches the whole process group: the main process and its workers
    proc = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # as at a terminal, even where CI starts us ignoring Ctrl-C
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not (dest / "utk_0.meta.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("still running 60 s after Ctrl-C")
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130 and lines == [
        "interrupted: finished chunks are kept; run the same command again to continue"], lines
    assert (dest / "utk_0.feather").exists()


# --- a whole photo through --source csv -----------------------------------------------------------

@pytest.mark.slow
def test_astronaut_via_csv_gives_one_face(tmp_path, run_cli, astronaut_path, detector):
    (tmp_path / "img").mkdir()
    shutil.copy(astronaut_path, tmp_path / "img" / "astronaut.jpg")
    labels = tmp_path / "LABELS.csv"
    labels.write_text("path,age,gender\nimg/astronaut.jpg,45,M\n")
    dest = tmp_path / "out"
    summary = ok(run_cli("--source", "csv", "-i", labels, "-d", dest))
    assert summary["faces_written"] == 1 and summary["skipped"] == 0
    rows = read_rows(dest, "csv")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["source_file"] == "img/astronaut.jpg"
    assert row["age"] == 45.0 and row["gender"] == 1 and row["faces"] == 1
    assert row["score"] > 0.9  # a clear frontal face (YuNet, the default, scores it 0.93; MTCNN above 0.99)
    found = detector.detect(load_image(astronaut_path))
    assert len(found) == 1
    np.testing.assert_allclose(row[["src_x1", "src_y1", "src_x2", "src_y2"]].to_numpy(np.float32),
                               found[0].box, atol=0.5)
    chip = cv2.imdecode(np.frombuffer(row["image"], np.uint8), cv2.IMREAD_COLOR)
    assert chip.shape == (256, 256, 3)


@pytest.mark.slow
def test_mtcnn_prepares_data_too_and_says_so_everywhere(utk_dir, tmp_path, run_cli, link_files, mtcnn_detector):
    """The original's detector stays a choice: rows, chunk record and summary name it, and its rows
    hold the faces the API finds with MTCNN (to float rounding, see the consistency tests)."""
    from detect import prepare_faces

    names = sorted(p.name for p in utk_dir.iterdir())[::3000][:6]
    folder = link_files([utk_dir / n for n in names], tmp_path / "in")
    dest = tmp_path / "out"
    summary = ok(run_cli("--source", "utk", "-i", folder, "-d", dest, "--detector", "mtcnn"))
    assert summary["detector"] == "mtcnn" and summary["settings"]["detector"] == "mtcnn"
    assert json.loads((dest / "utk_0.meta.json").read_text())["detector"] == "mtcnn"
    rows = read_rows(dest, "utk")
    assert len(rows) == summary["faces_written"] >= 5 and set(rows["detector"]) == {"mtcnn"}
    for _, row in rows.iterrows():
        face = prepare_faces(load_image(utk_dir / row["source_file"]), mtcnn_detector)[0]
        np.testing.assert_allclose(face.box, row[["src_x1", "src_y1", "src_x2", "src_y2"]].to_numpy(float), atol=0.01)


def test_a_run_that_writes_no_face_is_an_error_that_says_why(tmp_path, run_cli):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "30_0_0_grey.jpg"), np.full((120, 120, 3), 90, np.uint8))
    (folder / "31_1_0_empty.jpg").write_bytes(b"")
    result = run_cli("--source", "utk", "-i", folder, "-d", tmp_path / "out")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no face was written (1 no face found, 1 empty file (0 bytes); each image is listed in "
        f"{tmp_path / 'out' / 'utk_skipped.csv'})")
    assert json.loads(result.stdout)["faces_written"] == 0  # the summary is still written, and kept


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_no_workers_is_refused_not_replaced_by_a_default(workers, capsys):
    from preprocessing.dataset_proc import parse_args

    with pytest.raises(SystemExit) as stop:
        parse_args(["--source", "utk", "--workers", workers])
    assert stop.value.code == 2 and f"--workers: must be 1 or more, not {workers}" in capsys.readouterr().err
