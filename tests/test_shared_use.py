"""What a web server or a thread pool does with the library: one AgeEstimator shared by threads, and
images nobody should decode (a tiny PNG that claims 60000x60000 pixels, a photo over the pixel limit)."""
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from detect import ImageReadError, load_image
from conftest import png_claiming
from detect.prepare import MAX_PIXELS, decode_image


@pytest.fixture(scope="module")
def photos(astronaut_path, utk_dir):
    """The demo photo, a group made of four faces of different ages, and two UTKFace chips."""
    astronaut = load_image(astronaut_path)
    names = sorted(p.name for p in utk_dir.iterdir())
    chips = [load_image(utk_dir / name) for name in names[::2000][:6]]
    group = np.vstack([np.hstack([cv2.resize(c, (300, 300)) for c in chips[:2]]),
                       np.hstack([cv2.resize(c, (300, 300)) for c in chips[2:4]])])
    return [astronaut, group, chips[4], chips[5]]


def answers(faces):
    return [(tuple(round(v, 3) for v in f.box), round(f.age, 4), f.gender, round(f.gender_prob or 0, 4))
            for f in faces]


@pytest.mark.parametrize("model", ["tflite", "keras"])
def test_one_estimator_shared_by_eight_threads_answers_as_on_one(model, photos, repo_root):
    """400 calls on 8 threads used to give 287 exceptions, ages up to 65 years off and now and then a
    segmentation fault; now every answer is the one thread's, to the last digit shown."""
    from nets import AgeEstimator

    name = "c3ae_utk_asia_age_gender" + (".float32.tflite" if model == "tflite" else ".keras")
    estimator = AgeEstimator(repo_root / "model" / name)
    expected = [answers(estimator.predict(photo)) for photo in photos]
    assert sum(len(e) for e in expected) >= 6  # the group photo's four faces are found too
    calls = 200 if model == "tflite" else 60
    start = threading.Barrier(8)

    def call(k):
        if k < 8:
            start.wait()  # all threads at once
        return k % len(photos), answers(estimator.predict(photos[k % len(photos)]))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(calls)))
    wrong = [(k, got) for k, got in results if got != expected[k]]
    assert not wrong, f"{len(wrong)} of {calls} answers differ from one thread's, e.g. {wrong[0]}"


@pytest.mark.parametrize("width, height", [(60000, 60000), (100000, 100000), (8000, 7000)])
def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(width, height))
    assert path.stat().st_size < 100
    with pytest.raises(ImageReadError) as err:
        load_image(path)
    message = str(err.value)
    assert message.startswith(f"{path}: too large, over the limit of 50 MP") and "shrink it first" in message
    assert err.value.reason == "too large, over the limit of 50 MP"
    # the exact count: Pillow reads the size, or says how many pixels the header claims where it refuses
    assert (f"({width}x{height} = {width * height:,} pixels)" in message if width * height < 150e6
            else f"(its header claims {width * height:,} pixels)" in message), message


def test_a_photo_just_under_the_limit_is_read(tmp_path):
    """The limit is on pixels, not on files: a 50 MP photo (8660x5773, what model/README.md measures) is read."""
    side = int((MAX_PIXELS / 1.5) ** 0.5)
    image = np.zeros((side, int(side * 1.5), 3), np.uint8)
    assert image.shape[0] * image.shape[1] <= MAX_PIXELS
    ok, data = cv2.imencode(".png", image)
    assert decode_image(data.tobytes(), "big.png").shape == image.shape


def test_a_damaged_file_that_breaks_the_decoder_is_one_sentence(tmp_path):
    """A header Pillow cannot read and OpenCV's decoder rejects: ImageReadError, not cv2.error."""
    path = tmp_path / "odd.png"
    path.write_bytes(png_claiming(2000, 2000)[:40])
    with pytest.raises(ImageReadError, match="odd.png: not a readable image"):
        load_image(path)


def test_an_array_over_the_limit_is_refused_by_the_api(repo_root):
    from nets import AgeEstimator

    estimator = AgeEstimator()
    with pytest.raises(ValueError, match=r"too large, over the limit of 50 MP \(7100x7100 = 50,410,000 pixels\)"):
        estimator.predict(np.zeros((7100, 7100, 3), np.uint8))


def test_interpreters_made_on_many_threads_at_once_leave_stderr_where_it_was(repo_root):
    """Each thread's LiteRT interpreter is made with stderr captured (its start-up notice); eight threads
    swapping file descriptor 2 at once left it pointing at a deleted temporary file for good, so the
    server's messages and any later traceback were lost."""
    import os

    from nets.inference.tflite import TFLiteModel

    before = os.fstat(2)
    start = threading.Barrier(8)

    def make(_):
        start.wait()
        return TFLiteModel(repo_root / "model" / "c3ae_utk_asia_age_gender.float32.tflite")

    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            assert len(list(pool.map(make, range(8)))) == 8
        after = os.fstat(2)
        assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino), "stderr no longer where it was"
