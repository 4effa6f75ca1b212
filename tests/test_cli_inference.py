"""nets/test.py and AgeEstimator as a demanding user meets them: the light path without TensorFlow,
no display, bad output paths, folders full of odd entries, damaged model files, interruptions."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT

TEST_PY = str(REPO_ROOT / "nets" / "test.py")


def run_test_py(*args, env_extra=None, drop_env=(), timeout=300, cwd=REPO_ROOT):
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, TEST_PY, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_tflite_and_yunet_need_neither_tensorflow_nor_keras(tmp_path, astronaut_path):
    """The default path, as the API and as the CLI, in a fresh interpreter: sys.modules afterwards."""
    script = f"""
import json, sys
sys.path.insert(0, {str(REPO_ROOT)!r})
import cv2
from nets.inference.predict import AgeEstimator
faces = AgeEstimator().predict(cv2.imread({str(astronaut_path)!r}))
sys.argv = ["test.py"]
from nets.test import main
code = main(["-i", {str(astronaut_path)!r}, "--json", "--no-show", "-o", {str(tmp_path / 'a.jpg')!r}])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "mtcnn"))
print(json.dumps({{"faces": len(faces), "code": code, "heavy": heavy}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"faces": 1, "code": 0, "heavy": []}


def test_without_a_display_the_demo_says_so_and_exits_0(tmp_path, astronaut_path):
    """Without --no-show and without a display, Qt used to abort the process (exit 134) after the answer."""
    result = run_test_py("-i", astronaut_path, "-o", tmp_path / "a.jpg", drop_env=("DISPLAY", "WAYLAND_DISPLAY"))
    assert result.returncode == 0, result.stderr
    assert "no display here" in result.stderr and "age" in result.stdout
    result = run_test_py("-i", astronaut_path, "-o", tmp_path / "b.jpg", env_extra={"DISPLAY": ":87"})
    assert result.returncode == 0 and "no X server answers on DISPLAY=:87" in result.stderr, result.stderr


@pytest.mark.parametrize("output,words", [
    ("out.xyz", "cannot write .xyz images"), ("name_without_extension", "has no extension"),
    ("afile/out.jpg", "is a file, not a folder"), ("photo.jpg", "is the input image itself"),
    ("adir", "is a folder"), ("hardlink.jpg", "is the input image itself"),
])
def test_bad_output_paths_get_one_sentence_and_nothing_is_written(tmp_path, astronaut_path, output, words):
    photo = tmp_path / "photo.jpg"
    shutil.copy(astronaut_path, photo)
    os.link(photo, tmp_path / "hardlink.jpg")  # another name of the same file: writing it replaces the photo
    (tmp_path / "afile").write_text("a file, not a folder\n")
    (tmp_path / "adir").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_test_py("-i", photo, "-o", tmp_path / output, "--no-show", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert photo.read_bytes() == astronaut_path.read_bytes()


@pytest.mark.parametrize("size", ["0", "-5", "9"])
def test_smallest_face_size_below_10_is_refused(size, astronaut_path):
    result = run_test_py("-i", astronaut_path, "--no-show", "--min-face-size", size)
    assert result.returncode == 2 and "--min-face-size must be at least 10" in result.stderr
    assert "Traceback" not in result.stderr


def test_folder_output_into_the_input_folder_is_refused(tmp_path, astronaut_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(astronaut_path, folder / "a.jpg")
    result = run_test_py("--dir", folder, "-o", folder, "--no-show", "--json")
    assert result.returncode == 2 and "could replace your photos" in result.stderr
    assert (folder / "a.jpg").read_bytes() == astronaut_path.read_bytes()
    assert result.stdout == ""


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_test_py("--dir", tmp_path / "empty", "--no-show")
    assert result.returncode == 1 and "holds no files" in result.stderr


def test_folder_summary_accounts_for_every_entry(tmp_path, astronaut_path):
    """Broken links, pipes, folders named like images and link loops are counted, not silently passed."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(astronaut_path, folder / "a.jpg")
    (folder / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "folder.jpg").mkdir()
    (folder / "sub" / "loop").symlink_to(folder)  # a link back up: followed, it would never end
    (folder / "link.jpg").symlink_to(folder / "a.jpg")
    result = run_test_py("--dir", folder, "--no-show", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2  # a.jpg and link.jpg
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("5 entries in 3 folders: 2 images, 2 faces; skipped:"), summary
    for part in ("1 broken links", "1 not regular files (pipes, sockets, devices)", "1 links to folders (not followed)"):
        assert part in summary, summary
    for name, reason in (("dangling.jpg", "broken links"), ("pipe.jpg", "not regular files (pipes, sockets, devices)"),
                         ("sub/loop", "links to folders (not followed)")):  # each one named, not only counted
        assert f"skipped {folder / name}: {reason}" in result.stderr, result.stderr


def test_ctrl_c_during_a_folder_ends_with_a_summary(tmp_path, astronaut_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(300):
        (folder / f"{k:03d}.jpg").symlink_to(astronaut_path)
    # Ctrl-C as at a terminal: a shell without job control starts background commands with SIGINT
    # ignored (and Python then never raises KeyboardInterrupt), so the default is restored for the child
    process = subprocess.Popen([sys.executable, TEST_PY, "--dir", str(folder), "--json", "--no-show"],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = process.stdout.readline()  # the first face is out: the loop is running
    assert json.loads(first)["age"] > 0
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted after ") and "of 300 files" in last, last



def test_first_ctrl_c_asks_the_loop_to_stop_and_the_second_stops_at_once():
    """A KeyboardInterrupt raised inside numpy's file reading once came out as a SystemError (exit 1, a
    trace): the first Ctrl-C must only set a flag the loop reads between images."""
    from nets.inference.outputs import StopOnCtrlC

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even if CI ignores it
    try:
        with StopOnCtrlC("image") as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                signal.getsignal(signal.SIGINT)  # Python runs the handler between byte codes: one more line
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_is_left_alone_where_it_is_ignored():
    from nets.inference.outputs import StopOnCtrlC

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnCtrlC("frame") as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and not stop.requested
    finally:
        signal.signal(signal.SIGINT, before)



def test_the_loops_run_in_a_thread_too():
    """Only the main thread may set a signal handler; a folder run from another thread must not fail."""
    import threading

    from nets.inference.outputs import StopOnCtrlC

    entered = []

    def run():
        with StopOnCtrlC("image") as stop:
            entered.append(stop.requested)

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even if CI ignores it
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        assert entered == [False] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)

def test_ctrl_c_during_a_video_keeps_a_playable_annotated_file(tmp_path, astronaut_path):
    image = cv2.imread(str(astronaut_path))
    height, width = image.shape[:2]
    video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    for _ in range(300):
        writer.write(image)
    writer.release()
    annotated = tmp_path / "annotated.avi"
    process = subprocess.Popen([sys.executable, TEST_PY, "-v", str(video), "--json", "--no-show", "-o", str(annotated)],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert json.loads(process.stdout.readline())["frame"] == 0
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr  # as --dir ends on Ctrl-C
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted after "), last
    frames = int(last.split(" frames,")[0].removeprefix("interrupted after "))
    assert 0 < frames < 300 and last.endswith(f"annotated video written to {annotated}"), last
    capture = cv2.VideoCapture(str(annotated))
    written = 0
    while capture.read()[0]:
        written += 1
    capture.release()
    assert written == frames

@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_damaged_tflite_files_give_one_line_not_a_crash(tmp_path, astronaut_path, damage):
    """A truncated export used to end the process with a segmentation fault (exit 139)."""
    shipped = (REPO_ROOT / "model" / "c3ae_utk_asia_age_gender.float32.tflite").read_bytes()
    model = tmp_path / "model.tflite"
    model.write_bytes({"truncated": shipped[:len(shipped) // 2], "empty": b"", "text": b"not a model\n" * 9}[damage])
    result = run_test_py("-i", astronaut_path, "-m", model, "--json", "--no-show", "-o", tmp_path / "o.jpg")
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(model) in lines[0], lines
    assert not (tmp_path / "o.jpg").exists()


def test_api_converts_float_and_refuses_nan_images(astronaut_path):
    from nets.inference.predict import AgeEstimator

    estimator = AgeEstimator()
    image = cv2.imread(str(astronaut_path))
    as_uint8 = estimator.predict(image)
    as_float = estimator.predict(image.astype(np.float32) / 255.0)
    assert len(as_uint8) == len(as_float) == 1
    assert as_float[0].age == pytest.approx(as_uint8[0].age, abs=1e-4)
    broken = image.astype(np.float32)
    broken[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimator.predict(broken)
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.uint8), np.zeros((5, 0, 3), np.uint8)):
        with pytest.raises(ValueError, match="the image is empty"):
            estimator.predict(empty)
    with pytest.raises(ValueError, match="got None, not an image"):  # cv2.imread of a file that is not there
        estimator.predict(cv2.imread(str(astronaut_path) + ".missing"))


def test_folder_output_that_holds_the_input_or_existing_files_replaces_nothing(tmp_path, astronaut_path):
    photos = tmp_path / "p"
    (photos / "sub").mkdir(parents=True)
    shutil.copy(astronaut_path, photos / "a.jpg")
    shutil.copy(astronaut_path, photos / "sub" / "a.jpg")
    before = (photos / "a.jpg").read_bytes()
    result = run_test_py("--dir", photos / "sub", "-o", photos, "--no-show")
    assert result.returncode == 2 and "holds the input folder" in result.stderr
    assert (photos / "a.jpg").read_bytes() == before
    # an existing folder with a file of the same name: that file stays, and the summary says so
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"someone's photo")
    result = run_test_py("--dir", photos / "sub", "-o", other, "--no-show")
    assert (other / "a.jpg").read_bytes() == b"someone's photo"
    assert "1 not written because a file of that name exists" in result.stderr and result.returncode == 0


def test_folder_output_keeps_a_photo_without_extension_apart_from_its_namesake(tmp_path, astronaut_path):
    """An image named "photo" gets ".jpg" added in the output folder; with "photo.jpg" beside it,
    one of the two annotated copies used to be dropped as "a file of that name exists"."""
    photos, out = tmp_path / "p", tmp_path / "out"
    photos.mkdir()
    shutil.copy(astronaut_path, photos / "photo")
    shutil.copy(astronaut_path, photos / "photo.jpg")
    result = run_test_py("--dir", photos, "-o", out, "--no-show")
    assert result.returncode == 0 and "2 annotated copies" in result.stderr, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["photo.annotated.jpg", "photo.jpg"]



def test_file_names_that_are_not_utf8_work_or_get_one_sentence(tmp_path, astronaut_path):
    """OpenCV's Python bindings end the process (a segmentation fault) on such names; images are
    written by Python instead, and a video, which only OpenCV can open, is refused in one sentence."""
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.fsdecode(b"caf\xe9.jpg")  # Latin-1, as old cameras and Windows archives name files
    shutil.copy(astronaut_path, folder / odd)
    result = run_test_py("-i", folder / odd, "-o", tmp_path / odd, "--no-show")
    assert result.returncode == 0, result.stderr
    assert cv2.imdecode(np.fromfile(tmp_path / odd, np.uint8), cv2.IMREAD_COLOR).shape == cv2.imread(
        str(astronaut_path)).shape
    assert "caf\ufffd.jpg: age " in result.stdout
    result = run_test_py("--dir", folder, "-o", tmp_path / "out", "--no-show", "--json")
    assert result.returncode == 0 and (tmp_path / "out" / odd).is_file(), result.stderr
    video = os.fsdecode(b"v\xe9.avi")
    (tmp_path / video).write_bytes(b"not looked at")
    result = run_test_py("-v", tmp_path / video, "--no-show")
    assert result.returncode == 1 and "not valid UTF-8" in result.stderr, (result.returncode, result.stderr)
    image = cv2.imread(str(astronaut_path))
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (image.shape[1], image.shape[0]))
    writer.write(image)
    writer.release()
    result = run_test_py("-v", clip, "-o", tmp_path / video, "--no-show")
    assert result.returncode == 2 and "not valid UTF-8" in result.stderr, (result.returncode, result.stderr)


def test_an_output_folder_inside_the_input_is_never_read_whatever_its_spelling(tmp_path, astronaut_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(astronaut_path, photos / "a.jpg")
    spelled = photos / ".." / "photos" / "out"
    for _ in range(2):  # the second run must not find the first run's copies
        result = run_test_py("--dir", photos, "-o", spelled, "--no-show", "--json")
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 1, result.stdout
    assert not (photos / "out" / "out").exists()


def test_an_image_that_cannot_be_read_is_counted_and_the_rest_go_on(tmp_path, astronaut_path, as_a_user):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(astronaut_path, folder / "a.jpg")
    shutil.copy(astronaut_path, folder / "b.jpg")
    (folder / "a.jpg").chmod(0)
    result = subprocess.run([*as_a_user, sys.executable, TEST_PY, "--dir", str(folder), "--no-show", "--json"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "skipped: 1 cannot be read" in result.stderr.splitlines()[-1], result.stderr
    assert f"skipped {folder / 'a.jpg'}: cannot be read (permission denied)" in result.stderr  # named, with why


def test_a_tflite_file_with_damaged_weights_is_refused_not_answered_with_nan(tmp_path):
    from nets.network.contract import ModelFileError
    from nets.inference.tflite import TFLiteModel

    shipped = (REPO_ROOT / "model" / "c3ae_utk_asia_age_gender.float32.tflite").read_bytes()
    weights = np.frombuffer(shipped[:len(shipped) // 4 * 4], np.float32)
    # the largest run of ordinary float32 values is a weight buffer: make one of them NaN
    ordinary = np.isfinite(weights) & (np.abs(weights) > 1e-6) & (np.abs(weights) < 10)
    index = int(np.argmax(np.convolve(ordinary, np.ones(256), "same")))
    damaged = bytearray(shipped)
    damaged[4 * index:4 * index + 4] = b"\xff\xff\xff\xff"
    model = tmp_path / "damaged.tflite"
    model.write_bytes(bytes(damaged))
    with pytest.raises(ModelFileError, match="NaN or infinity"):
        TFLiteModel(model)
    TFLiteModel(REPO_ROOT / "model" / "c3ae_utk_asia_age_gender.float32.tflite")  # the undamaged file is fine


def test_a_keras_model_starts_tensorflow_quietly(tmp_path, astronaut_path):
    """TensorFlow's oneDNN, CUDA and cuInit notices came before the answer with -m MODEL.keras."""
    result = run_test_py("-i", astronaut_path, "-m", REPO_ROOT / "model" / "c3ae_utk_asia_age_gender.keras",
                         "--no-show", "-o", tmp_path / "o.jpg")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [f"annotated image written to {tmp_path / 'o.jpg'}"]


def test_a_video_file_named_like_a_camera_is_the_file(tmp_path, astronaut_path):
    image = cv2.imread(str(astronaut_path))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5.0,
                             (image.shape[1], image.shape[0]))
    for _ in range(3):
        writer.write(image)
    writer.release()
    (tmp_path / "clip.avi").rename(tmp_path / "7")
    result = run_test_py("-v", "7", "--no-show", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["frame"] for line in result.stdout.splitlines()] == [0, 1, 2]


@pytest.mark.parametrize("blocked,said,not_said", [
    ("ai_edge_litert", "needs LiteRT: pip install ai-edge-litert", "train one"),  # not installed
    ("ai_edge_litert.interpreter", "LiteRT is installed but could not be loaded", "pip install")])
def test_litert_that_cannot_be_imported_is_one_sentence_that_says_why(blocked, said, not_said, tmp_path,
                                                                      astronaut_path):
    script = (f"import sys; sys.modules[{blocked!r}] = None; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
              "from nets.test import main\n"
              f"sys.exit(main(['-i', {str(astronaut_path)!r}, '--no-show', '-o', {str(tmp_path / 'o.jpg')!r}]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert said in lines[0] and not_said not in lines[0]


# nets/test.py run as `python nets/test.py ...` would, with a Ctrl-C delivered exactly while one module
# is imported (as a person's Ctrl-C in the first second can land)
_CTRL_C_DURING_IMPORT = """
import builtins, os, runpy, signal, sys
module, raise_it, sys.argv = sys.argv[1], sys.argv[2] == "raise", sys.argv[3:]
real_import = builtins.__import__

def import_with_ctrl_c(name, *args, **kwargs):
    global module
    if name == module:
        module = None
        if raise_it:  # as a native module's start-up breaks: ImportError caused by the KeyboardInterrupt
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as exc:
                raise ImportError("initialization failed") from exc
        os.kill(os.getpid(), signal.SIGINT)
    return real_import(name, *args, **kwargs)

builtins.__import__ = import_with_ctrl_c
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("module,how", [("detect.prepare", "signal"), ("ai_edge_litert.interpreter", "raise")])
def test_ctrl_c_while_modules_load_is_an_interruption(module, how, tmp_path, astronaut_path):
    result = subprocess.run([sys.executable, "-c", _CTRL_C_DURING_IMPORT, module, how, TEST_PY, "-i", astronaut_path,
                             "--no-show", "-o", tmp_path / "o.jpg"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 130 and lines == ["interrupted"], result.stderr
    assert not (tmp_path / "o.jpg").exists()


def test_loading_leaves_an_ignored_ctrl_c_ignored():
    script = (f"import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); sys.path.insert(0, {str(REPO_ROOT)!r})\n"
              "import nets.test\n"
              "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr


@pytest.mark.parametrize("output,words", [("afile/o.mp4", "is a file, not a folder"), ("o.mkv", "use .mp4 or .avi"),
                                          ("clip.avi", "is the input video itself"),
                                          ("hardlink.avi", "is the input video itself")])
def test_bad_video_output_paths_are_refused_before_anything_runs(tmp_path, astronaut_path, output, words):
    image = cv2.imread(str(astronaut_path))
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (image.shape[1], image.shape[0]))
    writer.write(image)
    writer.release()
    os.link(clip, tmp_path / "hardlink.avi")
    (tmp_path / "afile").write_text("a file\n")
    before = clip.read_bytes()
    result = run_test_py("-v", clip, "-o", tmp_path / output, "--no-show")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and words in lines[0], lines
    assert clip.read_bytes() == before


class ImplausibleFace:
    """A detector stand-in whose landmarks are turned half round about their centre (eyes below the
    mouth, in swapped order: what an upside-down face looks like), without the second look."""

    def __init__(self):
        from detect.detector import YuNetDetector

        self.inner = YuNetDetector(check_orientation=False)

    def detect(self, image, color="bgr"):
        from detect.orientation import landmark_problem

        found = self.inner.detect(image, color)
        for det in found:
            det.landmarks = 2 * det.landmarks.mean(axis=0) - det.landmarks
            det.problem = landmark_problem(det.landmarks)
        return found


def test_a_face_that_cannot_be_upright_is_marked_not_hidden(astronaut_path):
    from nets.inference.predict import AgeEstimator, draw_predictions

    image = cv2.imread(str(astronaut_path))
    faces = AgeEstimator(detector=ImplausibleFace()).predict(image)
    assert len(faces) == 1 and "eye line turned" in faces[0].warning
    assert "upside down" in faces[0].to_json()["warning"]
    drawn = draw_predictions(image, faces)
    x1, y1, x2, y2 = (int(round(v)) for v in faces[0].box)
    assert tuple(drawn[y2, (x1 + x2) // 2]) == (128, 128, 128)  # the box is grey
    plain = AgeEstimator().predict(image)
    assert plain[0].warning is None and "warning" not in plain[0].to_json()


def test_data_preparation_skips_a_face_that_cannot_be_upright(astronaut_path):
    from preprocessing import build
    from preprocessing.sources import Item

    build._detector, build._settings = ImplausibleFace(), build.Settings()
    try:
        row, reason = build.process_item(Item(str(astronaut_path), 30.0, 0, "a.jpg"))
    finally:
        build._detector = build._settings = None
    assert row is None and reason == "landmarks not of an upright face"


def test_a_reader_that_goes_away_stops_the_run_quietly(tmp_path, astronaut_path):
    """`nets/test.py --dir ... --json | head -1`: the rest of the run has nowhere to go; it stops with the
    shell's code for a closed pipe and no BrokenPipeError traceback."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(8):
        shutil.copy(astronaut_path, folder / f"{k}.jpg")
    process = subprocess.Popen([sys.executable, TEST_PY, "--dir", str(folder), "--json", "--no-show"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(process.stdout.readline())["file"].endswith("0.jpg")
    process.stdout.close()  # what head does after its first line
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_answers_that_cannot_be_written_end_the_run_in_one_sentence(tmp_path, astronaut_path):
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, TEST_PY, "-i", str(astronaut_path), "--json", "--no-show", "-o",
                                 str(tmp_path / "a.jpg")],
                                cwd=REPO_ROOT, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        "error: cannot write to standard output (no space left on device); stopped", result.stderr


def test_a_decompression_bomb_is_one_sentence_and_the_folder_goes_on(tmp_path, astronaut_path):
    """A 1.8 KB PNG claiming 60000x60000 pixels ended -i in a traceback and --dir with no summary, the
    images after it never looked at."""
    from conftest import png_claiming

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_bomb.png").write_bytes(png_claiming(60000, 60000))
    shutil.copy(astronaut_path, folder / "b.jpg")
    alone = subprocess.run([sys.executable, TEST_PY, "-i", str(folder / "a_bomb.png"), "--no-show", "-o",
                            str(tmp_path / "x.jpg")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert alone.returncode == 1 and "Traceback" not in alone.stderr, alone.stderr
    assert alone.stderr.strip().splitlines()[-1].startswith(
        f"error: {folder / 'a_bomb.png'}: too large, over the limit of 50 MP"), alone.stderr
    many = subprocess.run([sys.executable, TEST_PY, "--dir", str(folder), "--no-show", "--json"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert many.returncode == 0 and len(many.stdout.splitlines()) == 1, many.stderr  # b.jpg was looked at
    assert many.stderr.strip().splitlines()[-1].endswith("skipped: 1 too large, over the limit of 50 MP"), many.stderr
