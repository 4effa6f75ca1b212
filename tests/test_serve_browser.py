"""The page at / in a real browser: headless Chromium (Debian's package) driven by Playwright, against the
real server, model and detector. It checks what a person sees: a box of the right colour on every face,
the labels and numbers of the API's answer, the JSON, errors, the webcam, and nothing fetched from
elsewhere. Skips only where Playwright or /usr/bin/chromium is missing (.ci/run installs both)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import pytest

from serving import ASTRONAUT, request, running, several_faces_photo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # a made-up camera, allowed without asking: the webcam path runs too
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
RGB = {"F": (230, 60, 60), "M": (40, 120, 230)}  # app.js COLORS, as drawn by nets/inference/predict.py

pytest.importorskip("fastapi", reason="the server's packages are not installed (pip install -r requirements.txt)")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(not CHROMIUM.is_file() and shutil.which("chromium") is None,
                                reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def server():
    from nets.inference.server import create_app

    with running(create_app()) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.is_file() else shutil.which("chromium")),
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """The page at a desktop's width; every URL it asks for is recorded in page.asked."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.asked = []
    page.on("request", lambda r: page.asked.append(r.url))
    page.goto(server + "/")
    yield page
    context.close()


def label_of(face: dict) -> str:
    """What the page writes on a face: app.js labelFor (JavaScript's Math.round: halves up)."""
    label = str(math.floor(face["age"] + 0.5))
    if face.get("age_low") is not None and face.get("age_high") is not None:
        label += f" ({math.floor(face['age_low'] + 0.5)}-{math.floor(face['age_high'] + 0.5)})"
    if face.get("gender"):
        label += f" {face['gender']}"
    return label + (" ?" if face.get("warning") else "")


def choose(page, path) -> None:
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#canvas[data-faces]", timeout=30_000)


def pixels_on_the_boxes(page, answer: dict) -> list:
    """The canvas's colour in the middle of each box's left and right edges, as drawn."""
    return page.evaluate("""(faces) => {
        const canvas = document.getElementById("canvas");
        const ctx = canvas.getContext("2d");
        const scale = canvas.width / faces.width;
        return faces.boxes.map(([x1, y1, x2, y2]) => [x1, x2].map((x) =>
            Array.from(ctx.getImageData(Math.floor(x * scale), Math.floor((y1 + y2) / 2 * scale), 1, 1).data.slice(0, 3))));
    }""", {"width": answer["width"], "boxes": [f["box"] for f in answer["faces"]]})


@pytest.mark.parametrize("photo", ["astronaut", "three faces"])
def test_the_page_draws_every_face_with_the_numbers_of_the_api(page, server, photo, tmp_path):
    path = ASTRONAUT
    if photo == "three faces":
        path = tmp_path / "three faces.jpg"
        cv2.imwrite(str(path), several_faces_photo(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    api = request(server, "POST", "/predict", path.read_bytes(), {"Content-Type": "image/jpeg"}).json()
    assert len(api["faces"]) == (1 if photo == "astronaut" else 3)

    choose(page, path)
    assert page.get_attribute("#canvas", "data-faces") == str(len(api["faces"]))
    assert page.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]") == \
        [api["width"], api["height"]]
    labels = page.locator("#faces .face-label").all_inner_texts()
    ages = [float(a) for a in page.locator("#faces li").evaluate_all("items => items.map(i => i.dataset.age)")]
    assert labels == [label_of(f) for f in api["faces"]]
    assert ages == [f["age"] for f in api["faces"]]
    assert json.loads(page.text_content("#json")) == api
    for face, edges in zip(api["faces"], pixels_on_the_boxes(page, api)):
        for pixel in edges:
            assert max(abs(a - b) for a, b in zip(pixel, RGB[face["gender"]])) <= 2, (face["box"], pixel)
    assert page.inner_text("#status").startswith(f"{len(api['faces'])} face")
    assert all(url.startswith(server) or url.startswith(("blob:", "data:")) for url in page.asked), page.asked


def test_the_age_range_is_drawn_where_the_answer_has_one(page):
    """The range display is ready before the library gives ranges: answers made by hand, via route interception."""
    face = {"box": [178.3, 62.9, 268.4, 175.6], "score": 0.93, "age": 34.4, "gender": "F", "gender_prob": 0.83,
            "landmarks": [[200, 101], [246, 102], [220, 124], [199, 142], [239, 143]], "distribution": [0.0] * 12}
    made = {"faces": [{**face, "age_low": 27.6, "age_high": 41.2, "age_level": 0.8},
                      {**face, "box": [20, 300, 120, 420], "age": 61.5, "gender": "M"}],
            "width": 512, "height": 512, "model": {"name": "made by hand", "sha256": "0"}}
    page.route("**/predict", lambda route: route.fulfill(status=200, content_type="application/json",
                                                         body=json.dumps(made)))
    choose(page, ASTRONAUT)
    assert page.locator("#faces .face-label").all_inner_texts() == ["34 (28-41) F", "62 M"]
    assert [label_of(f) for f in made["faces"]] == ["34 (28-41) F", "62 M"]
    assert page.evaluate("C3AE.labelFor({age: 7.49, gender: null, warning: 'upside down'})") == "7 ?"


def test_a_photo_dropped_on_the_page_is_answered(page):
    import base64

    page.evaluate("""(data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
        const drop = new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true });
        document.getElementById("drop").dispatchEvent(drop);
    }""", base64.b64encode(ASTRONAUT.read_bytes()).decode())
    page.wait_for_selector("#canvas[data-faces]", timeout=30_000)
    assert page.get_attribute("#canvas", "data-faces") == "1"
    assert page.inner_text("#status").startswith("1 face found")


def test_a_bad_file_shows_the_servers_sentence(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#status.error", timeout=30_000)
    assert page.inner_text("#status") == "422: notes.txt: not a readable image"
    assert page.is_hidden("#result")


def test_a_photo_from_the_webcam_is_answered(page):
    # Chromium's made-up camera shows a test pattern: no face, but the whole path runs
    page.click("#camera")
    page.wait_for_function("() => document.getElementById('video').videoWidth > 0", timeout=30_000)
    page.click("#snap")
    page.wait_for_selector("#canvas[data-faces]", timeout=30_000)
    assert page.get_attribute("#canvas", "data-faces") == "0"
    assert page.inner_text("#status").startswith("No face found")
    assert json.loads(page.text_content("#json"))["faces"] == []


@pytest.mark.parametrize("width", [390, 1280])
def test_the_page_fits_a_phone_and_a_desktop(browser, server, width, tmp_path):
    phone = width < 600
    context = browser.new_context(viewport={"width": width, "height": 844}, device_scale_factor=2 if phone else 1,
                                  is_mobile=phone, has_touch=phone)
    page = context.new_page()
    page.goto(server + "/")
    choose(page, ASTRONAUT)
    # nothing wider than the screen: no sideways scrolling, the photo scaled to fit
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("document.getElementById('canvas').getBoundingClientRect().width") <= width
    assert page.locator("#faces .face-label").count() == 1
    page.screenshot(path=str(tmp_path / f"page_{width}.png"), full_page=True)
    context.close()
