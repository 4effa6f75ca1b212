"""The HTTP API (nets/inference/server.py, nets/serve.py) with the real model and detector: answers,
every kind of bad input, a flood, memory over many requests, and no photo written to disk.
FastAPI's TestClient for the answers; the real uvicorn server on loopback where the network matters."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT, png_claiming
from serving import ASTRONAUT, multipart, request, running, several_faces_photo

pytest.importorskip("fastapi", reason="the server's packages are not installed (pip install -r requirements.txt)")

from fastapi.testclient import TestClient  # noqa: E402

from nets.inference.predict import DEFAULT_MODEL, AgeEstimator  # noqa: E402
from nets.inference.server import MAX_BODY_BYTES, Prediction, card_path, create_app  # noqa: E402

PHOTO = ASTRONAUT.read_bytes()
JPEG = {"Content-Type": "image/jpeg"}


@pytest.fixture(scope="module")
def app():
    return create_app(threads=2)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def server(app):
    """The same app served by uvicorn on a loopback port: its base URL."""
    with running(app) as url:
        yield url


def jpeg_of(image, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def test_a_photo_as_raw_bytes_or_as_a_form_gets_the_records_of_nets_test_json(client):
    expected = [face.to_json() for face in AgeEstimator().predict(cv2.imread(str(ASTRONAUT)))]
    raw = client.post("/predict", content=PHOTO, headers=JPEG)
    form = client.post("/predict", files={"image": ("astronaut.jpg", PHOTO, "image/jpeg")})
    for answer in (raw, form):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["faces"] == expected and len(expected) == 1
        assert (body["width"], body["height"]) == (512, 512)
        assert body["model"] == {"name": DEFAULT_MODEL.name, "sha256": hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()}


def test_every_face_of_a_group_photo_is_answered(client):
    group = several_faces_photo()
    answer = client.post("/predict", content=jpeg_of(group, 95), headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 200, answer.text
    faces = answer.json()["faces"]
    assert len(faces) == 3
    # one face in each third of the 1536 px wide photo
    assert sorted(int((f["box"][0] + f["box"][2]) / 2 // 512) for f in faces) == [0, 1, 2]
    assert all(0 < f["age"] < 100 and f["gender"] in ("F", "M") for f in faces)


def test_fields_the_library_adds_to_a_face_pass_through():
    # an age range (age_low, age_high, age_level) is coming to FacePrediction.to_json(): the typed answer
    # must neither drop it nor invent fields a face does not have
    face = {**AgeEstimator().predict(cv2.imread(str(ASTRONAUT)))[0].to_json(), "age_low": 28.0, "age_high": 41.0,
            "age_level": 0.8}
    answer = Prediction.model_validate({"faces": [face], "width": 512, "height": 512,
                                        "model": {"name": "m", "sha256": "0"}})
    assert answer.model_dump(exclude_unset=True)["faces"] == [face]


def test_health_and_model(client):
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["threads"] == 2
    model = client.get("/model").json()
    card = json.loads(card_path(DEFAULT_MODEL).read_text())
    assert model["name"] == DEFAULT_MODEL.name and model["detector"] == "yunet"
    assert model["outputs"] == ["W1", "age", "gender"]
    assert model["card"]["lists_this_file"] is True
    assert model["card"]["validation_mae"] == card["validation"]["mae"]
    assert model["card"]["faces_train"] == card["data"]["faces_train"]


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert client.head("/").status_code == 200  # what `curl -I` asks
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/static/app.js", "/static/style.css"):
        assert client.get(path).status_code == 200, path


def test_a_model_without_a_card_is_served_and_said_to_have_none(tmp_path):
    import shutil

    copy = shutil.copy(DEFAULT_MODEL, tmp_path / "mine.float32.tflite")
    with TestClient(create_app(copy, threads=1)) as mine:
        model = mine.get("/model").json()
        assert model["name"] == "mine.float32.tflite" and model["card"] is None
        answer = mine.post("/predict", content=PHOTO, headers=JPEG).json()
        assert answer["model"]["name"] == "mine.float32.tflite" and len(answer["faces"]) == 1


def test_the_card_of_an_export_is_the_card_of_its_model(tmp_path):
    assert card_path(tmp_path / "m.float32.tflite") == tmp_path / "m.card.json"
    assert card_path(tmp_path / "m.keras") == tmp_path / "m.card.json"


def big_flat_jpeg(width: int, height: int) -> bytes:
    return jpeg_of(np.full((height, width, 3), 90, np.uint8), 50)


BAD_INPUTS = {
    # name: (request, status, words of the answer's detail)
    "not an image": (dict(content=b"hello, this is text", headers=JPEG), 422, "the uploaded photo: not a readable image"),
    "empty body": (dict(content=b"", headers=JPEG), 400, "the request body is empty"),
    "truncated JPEG": (dict(content=PHOTO[: len(PHOTO) // 2], headers=JPEG), 422, "not a readable image"),
    "over the pixel limit": (dict(content=lambda: big_flat_jpeg(9000, 6000), headers=JPEG), 413,
                             "too large, over the limit of 50 MP (9000x6000 = 54,000,000 pixels)"),
    "decompression bomb": (dict(content=png_claiming(100_000, 100_000), headers={"Content-Type": "image/png"}), 413,
                           "too large, over the limit of 50 MP"),
    "over the size limit": (dict(content=lambda: b"\xff" * (MAX_BODY_BYTES + 1), headers=JPEG), 413,
                            "the upload is 25,000,001 bytes, over the limit of 25 MB"),
    "over the size limit, sent in chunks": (dict(content=lambda: iter([b"\xff" * 1_000_000] * 26), headers=JPEG), 413,
                                            "the upload is over the limit of 25 MB"),
    "wrong content type": (dict(content=PHOTO, headers={"Content-Type": "text/plain"}), 415,
                           "the request has Content-Type text/plain"),
    "no content type": (dict(content=PHOTO), 415, "the request has no Content-Type"),
    "form without the field image": (dict(files={"photo": ("a.jpg", PHOTO, "image/jpeg")}), 400,
                                     "no field named 'image'"),
    "form with a text file": (dict(files={"image": ("notes.txt", b"not a photo", "text/plain")}), 422,
                              "notes.txt: not a readable image"),
    "form cut short": (dict(content=multipart("image", "a.jpg", PHOTO)[0][:-200],
                            headers=multipart("image", "a.jpg", b"")[1]), 400, "ends inside its field 'image'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_one_clear_json_error_and_the_server_goes_on(client, case):
    kwargs, status, words = BAD_INPUTS[case]
    kwargs = {k: v() if callable(v) else v for k, v in kwargs.items()}
    answer = client.post("/predict", **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    detail = answer.json()["detail"]
    assert words in detail and "\n" not in detail and "Traceback" not in detail
    assert client.post("/predict", content=PHOTO, headers=JPEG).status_code == 200


def test_paths_and_methods_outside_the_api_get_json_errors(client):
    missing = client.get("/admin")
    assert missing.status_code == 404 and "there is nothing at /admin" in missing.json()["detail"]
    assert client.get("/static/nothing.js").status_code == 404
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.json()["detail"] == "GET is not accepted at /predict"


def test_bad_input_over_real_http_and_the_server_goes_on(server):
    # through uvicorn: a body over the limit is refused from its Content-Length, before it is read
    huge = request(server, "POST", "/predict", b"\0" * (MAX_BODY_BYTES + 1000), JPEG)
    assert huge.status == 413 and "over the limit of 25 MB" in huge.json()["detail"]
    bomb = request(server, "POST", "/predict", png_claiming(100_000, 100_000), {"Content-Type": "image/png"})
    assert bomb.status == 413 and "header claims" in bomb.json()["detail"]
    missing = request(server, "GET", "/nowhere")
    assert missing.status == 404 and missing.json()["detail"].startswith("there is nothing at /nowhere")
    good = request(server, "POST", "/predict", PHOTO, JPEG)
    assert good.status == 200 and len(good.json()["faces"]) == 1


def test_a_slow_upload_is_given_up_with_408_and_its_place_given_back():
    import socket

    app = create_app(threads=1, queue=0, read_seconds=0.5)  # one place only
    with running(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                         b"Content-Length: 100000\r\n\r\n" + PHOTO[:1000])  # and then nothing more
            head = slow.recv(65536).decode("latin-1")
        assert head.startswith("HTTP/1.1 408") and "the upload took longer than 0.5 s to arrive" in head, head
        assert request(url, "POST", "/predict", PHOTO, JPEG).status == 200


def test_a_client_gone_mid_upload_leaves_the_server_serving(server):
    import socket

    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as gone:
        gone.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 100000\r\n\r\n" + PHOTO[:1000])
    deadline = time.monotonic() + 10
    while request(server, "GET", "/health").json()["requests_now"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert request(server, "GET", "/health").json()["requests_now"] == 0  # its place given back
    assert request(server, "POST", "/predict", PHOTO, JPEG).status == 200


def test_the_api_describes_itself(client):
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/predict", "/health", "/model"}
    assert {"200", "413", "415", "422", "503"} <= set(schema["paths"]["/predict"]["post"]["responses"])
    assert client.get("/docs").status_code == 404  # FastAPI's pages fetch scripts from the internet: off


def test_a_flood_gets_503_at_once_and_the_server_goes_on():
    app = create_app(threads=1, queue=1)  # two places: one photo computed, one waiting
    group = jpeg_of(several_faces_photo())
    clients = 24
    start = threading.Barrier(clients)

    def one(_):
        start.wait()
        began = time.perf_counter()
        answer = request(url, "POST", "/predict", group, JPEG)
        answer.seconds = time.perf_counter() - began
        return answer

    with running(app) as url:
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(one, range(clients)))
        statuses = sorted(a.status for a in answers)
        busy = [a for a in answers if a.status == 503]
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
        assert all("the server is busy" in a.json()["detail"] and a.headers["Retry-After"] == "1" for a in busy)
        # refused at once, not after waiting: the refusals come back sooner than the photos computed
        seconds = {status: np.median([a.seconds for a in answers if a.status == status]) for status in (200, 503)}
        assert seconds[503] < seconds[200], seconds
        assert request(url, "GET", "/health").json()["requests_now"] == 0  # every place given back
        assert request(url, "POST", "/predict", group, JPEG).status == 200


class DiskWrites:
    """Every file this process opens for writing (Python's audit events), while `.watching` is set."""

    def __init__(self):
        self.watching, self.seen = False, []
        sys.addaudithook(self.hook)  # audit hooks cannot be removed: this one only records while watching

    def hook(self, event, args):
        if not self.watching or event != "open":
            return
        path, mode, flags = args
        writes = (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) or any(c in (mode or "") for c in "wax+")
        if writes:
            self.seen.append(path)


@pytest.fixture(scope="module")
def disk_writes():
    return DiskWrites()


def test_a_5_mb_upload_is_never_written_to_disk(server, disk_writes):
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    noise = np.random.default_rng(0).integers(0, 256, (1300, 1300, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", noise)
    body, headers = multipart("image", "noise.png", png.tobytes(), "image/png")
    assert len(body) > 5_000_000

    async def one_chunk():
        yield body

    async def starlettes_own_parser():
        form = await MultiPartParser(Headers(headers), one_chunk()).parse()
        await form.close()

    import asyncio

    # The watch sees what Starlette's own form parser does with such an upload: a temporary file
    disk_writes.watching = True
    asyncio.run(starlettes_own_parser())
    disk_writes.watching = False
    assert disk_writes.seen, "the watch saw no temporary file from Starlette's parser: it cannot see one"
    disk_writes.seen.clear()

    temporary = set(os.listdir(tempfile.gettempdir()))
    disk_writes.watching = True  # the server runs in this process: its threads' writes are seen too
    try:
        answer = request(server, "POST", "/predict", body, headers)
    finally:
        disk_writes.watching = False
    assert answer.status == 200 and answer.json()["faces"] == [], answer.body[:300]
    assert disk_writes.seen == []
    assert set(os.listdir(tempfile.gettempdir())) - temporary == set()


@pytest.mark.slow
def test_memory_stays_flat_over_1000_requests(tmp_path):
    """The real command, nets/serve.py, in its own process: its resident memory after 1,000 photos from
    4 clients is within 50 MB of what it was after the first 50."""
    import http.client

    sys.path.insert(0, str(REPO_ROOT / "nets"))
    from benchmark import post_photos, resident_mb, start_server

    process, port = start_server(DEFAULT_MODEL, threads=2)
    try:
        post_photos([port], PHOTO, 4, 50, 120)
        before = resident_mb(process.pid)
        latencies, statuses, _ = post_photos([port], PHOTO, 4, 1000, 600)
        after = resident_mb(process.pid)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/health")
        assert json.loads(connection.getresponse().read())["requests_now"] == 0
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert statuses == {200: 1000}
    assert after - before < 50, f"memory grew from {before:.0f} MB to {after:.0f} MB over 1,000 requests"


def test_the_server_imports_no_tensorflow():
    code = ("import sys; sys.path.insert(0, '.')\n"
            "from fastapi.testclient import TestClient\n"
            "from nets.inference.server import create_app\n"
            "client = TestClient(create_app(threads=1))\n"
            "answer = client.post('/predict', content=open('assets/astronaut.jpg', 'rb').read(),"
            " headers={'Content-Type': 'image/jpeg'})\n"
            "assert answer.status_code == 200 and len(answer.json()['faces']) == 1, answer.text\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'mtcnn') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_serve_command_refuses_a_missing_model_in_one_sentence(tmp_path):
    result = subprocess.run([sys.executable, "nets/serve.py", "-m", str(tmp_path / "none.tflite"), "--port", "0"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and lines == [f"error: model file {tmp_path / 'none.tflite'} does not exist"]


def test_serve_command_says_in_one_sentence_where_it_cannot_listen():
    """A port in use ended the server with exit 3 and no word (its stderr was lost, see test_shared_use), an
    unknown host was announced as the address to open, and --port 99999 listened on 34463."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        for flags, said in ((["--port", str(port)], f"error: cannot listen on 127.0.0.1:{port} (address already in use)"),
                            (["--host", "999.1.1.1"], "error: cannot listen on 999.1.1.1:8000 (")):
            result = subprocess.run([sys.executable, "nets/serve.py", *flags], cwd=REPO_ROOT, capture_output=True,
                                    text=True, timeout=120)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(said), result.stderr
    finally:
        taken.close()
    result = subprocess.run([sys.executable, "nets/serve.py", "--port", "99999"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "--port must be between 0 and 65535, not 99999" in result.stderr


@pytest.mark.slow
def test_serve_benchmark_prints_every_way_and_client_count():
    result = subprocess.run([sys.executable, "nets/benchmark.py", "serve", "--requests", "6", "--memory-requests", "30"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.strip("| ").split(" | ") for line in result.stdout.splitlines()
            if line.startswith("| ") and "---" not in line]
    speed = [row for row in rows if row[0].startswith(("1 thread", "2 threads", "2 processes"))]
    ways = sorted((" ".join(row[0].split()[:2]), int(row[1])) for row in speed)
    assert ways == sorted((way, clients) for way in ("1 thread", "2 threads", "2 processes") for clients in (1, 4, 16))
    assert all(float(row[2]) > 0 and row[-1] == "-" for row in speed), result.stdout  # every request answered 200
    memory = next(row for row in rows if row[0] == "30")  # answers, seconds, before, after, growth, peak
    assert abs(float(memory[4])) < 50, result.stdout
