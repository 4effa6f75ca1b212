"""The light install of the README (numpy, opencv-python, ai-edge-litert and this project: no
TensorFlow, no Keras) runs nets/test.py on a photo, a folder and a video.

It needs that environment: .ci/run makes it and names its Python in C3AE_LIGHT_PYTHON; elsewhere
the test is skipped (make one with `python -m venv v && v/bin/pip install numpy opencv-python
ai-edge-litert` and set C3AE_LIGHT_PYTHON=v/bin/python)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import cv2
import pytest

from conftest import REPO_ROOT

LIGHT_PYTHON = os.environ.get("C3AE_LIGHT_PYTHON")
pytestmark = pytest.mark.skipif(not LIGHT_PYTHON, reason="no light environment (C3AE_LIGHT_PYTHON is not set; .ci/run sets it)")


def light(*args, timeout=300):
    return subprocess.run([LIGHT_PYTHON, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_the_light_environment_has_no_tensorflow():
    result = light("-c", "import importlib.util as u; print([m for m in ('tensorflow', 'keras', 'mtcnn') if u.find_spec(m)])")
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_photo_folder_and_video_run_in_the_light_environment(tmp_path, astronaut_path):
    photo = light("nets/test.py", "-i", astronaut_path, "--json", "--no-show", "-o", tmp_path / "a.jpg")
    assert photo.returncode == 0, photo.stderr
    face = json.loads(photo.stdout)
    assert face["gender"] in ("F", "M") and 0 < face["age"] < 100 and (tmp_path / "a.jpg").is_file()

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(astronaut_path, folder / "a.jpg")
    (folder / "notes.txt").write_text("not an image\n")
    many = light("nets/test.py", "--dir", folder, "--json", "--no-show")
    assert many.returncode == 0, many.stderr
    assert len(many.stdout.splitlines()) == 1 and "1 not a readable image" in many.stderr

    image = cv2.imread(str(astronaut_path))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (image.shape[1], image.shape[0]))
    for _ in range(5):
        writer.write(image)
    writer.release()
    clip = light("nets/test.py", "-v", video, "--json", "--no-show")
    assert clip.returncode == 0, clip.stderr
    assert len(clip.stdout.splitlines()) == 5 and "5 frames" in clip.stderr

    # the original's detector is not there: one sentence, not a traceback
    mtcnn = light("nets/test.py", "-i", astronaut_path, "--no-show", "--detector", "mtcnn", "-o", tmp_path / "m.jpg")
    lines = [line for line in mtcnn.stderr.splitlines() if line.strip()]
    assert mtcnn.returncode != 0 and len(lines) == 1 and "mtcnn, tensorflow" in lines[0], mtcnn.stderr


def test_the_server_runs_in_the_light_environment():
    """nets/serve.py as the README starts it, in the light environment: the page, a photo, the model."""
    import time

    from serving import free_port, request

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([LIGHT_PYTHON, "nets/serve.py", "--port", str(port), "--quiet"], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while server.poll() is None and time.monotonic() < deadline:
            try:
                if request(url, "GET", "/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        assert server.poll() is None, server.communicate()[1]
        answer = request(url, "POST", "/predict", (REPO_ROOT / "assets" / "astronaut.jpg").read_bytes(),
                         {"Content-Type": "image/jpeg"})
        assert answer.status == 200, answer.body
        faces = answer.json()["faces"]
        assert len(faces) == 1 and faces[0]["gender"] in ("F", "M") and 0 < faces[0]["age"] < 100
        assert request(url, "GET", "/model").json()["card"]["lists_this_file"] is True
        assert request(url, "GET", "/").status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
