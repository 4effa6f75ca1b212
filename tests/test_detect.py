"""The detect/ path: alignment geometry, triple box, crops, the real MTCNN detector, image loading."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from detect import (
    CHIP_SIZE,
    CROP_SIZE,
    EYE_MIDPOINT,
    ImageReadError,
    align_face,
    crop_box,
    crop_triple,
    decode_chip,
    head_pose,
    load_image,
    prepare_faces,
    transform_box,
    transform_points,
    triple_boxes,
)
from detect.align import TEMPLATE_POINTS, alignment_matrix

INTER_OCULAR = (0.7561 - 0.2242) / 1.8 * 256  # 75.65 px on the chip


def rotation(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


# --- alignment ---------------------------------------------------------------------------------

def test_template_matches_the_reference():
    fractions = np.array([[0.2242, 0.2119], [0.7561, 0.2119], [0.4901, 0.6281],
                          [0.2541, 0.7802], [0.7261, 0.7802]])
    np.testing.assert_allclose(TEMPLATE_POINTS, (0.4 + fractions) / 1.8 * 256)
    assert CHIP_SIZE == 256 and CROP_SIZE == 64
    assert EYE_MIDPOINT == pytest.approx((128.0, 102.4))
    assert np.linalg.norm(TEMPLATE_POINTS[1] - TEMPLATE_POINTS[0]) == pytest.approx(75.6, abs=0.1)


# (rotation in degrees, scale, shift): landmarks = scale * R(angle) @ template + shift
SIMILARITIES = [(0.0, 1.0, (0.0, 0.0)), (25.0, 1.7, (40.0, -10.0)), (-40.0, 0.6, (300.0, 200.0)),
                (90.0, 2.2, (500.0, 30.0)), (170.0, 1.3, (400.0, 420.0))]


@pytest.mark.parametrize("angle,scale,shift", SIMILARITIES)
def test_align_synthetic_similarity(angle, scale, shift):
    landmarks = scale * TEMPLATE_POINTS @ rotation(angle).T + np.array(shift)
    # An image with a bright dot on each landmark, to see where the warp puts the pixels.
    image = np.zeros((700, 700, 3), np.uint8)
    for x, y in landmarks:
        assert 0 <= x < 700 and 0 <= y < 700
        cv2.circle(image, (int(round(x)), int(round(y))), int(round(4 * scale)), (255, 255, 255), -1)

    chip, matrix = align_face(image, landmarks)
    assert chip.shape == (256, 256, 3) and chip.dtype == np.uint8
    assert matrix.shape == (2, 3)

    # The similarity is undone: rotation -angle, scale 1/scale.
    np.testing.assert_allclose(matrix[:, :2], rotation(-angle) / scale, atol=1e-9)

    on_chip = transform_points(landmarks, matrix)
    left, right = on_chip[0], on_chip[1]
    assert left[1] == pytest.approx(102.4, abs=1e-3)
    assert right[1] == pytest.approx(102.4, abs=1e-3)
    assert (left[0] + right[0]) / 2 == pytest.approx(128.0, abs=1e-3)
    assert right[0] - left[0] == pytest.approx(INTER_OCULAR, abs=0.05)  # left eye stays left
    # the whole face lands on the template, moved so that the eye midpoint is at (128, 102.4)
    offset = np.array(EYE_MIDPOINT) - (TEMPLATE_POINTS[0] + TEMPLATE_POINTS[1]) / 2
    np.testing.assert_allclose(on_chip, TEMPLATE_POINTS + offset, atol=1e-3)

    # The pixels moved the same way as the points: bright dots on the landmarks, dark between.
    for x, y in on_chip:
        assert chip[int(round(y)), int(round(x))].min() > 200, (x, y)
    assert chip[int(round(102.4)), 128].max() < 30
    assert chip[5, 5].max() == 0 and chip[250, 250].max() == 0


def test_align_is_least_squares_under_landmark_noise():
    rng = np.random.default_rng(0)
    landmarks = 1.5 * TEMPLATE_POINTS @ rotation(15).T + 50 + rng.normal(0, 1.0, (5, 2))
    _, matrix = align_face(np.zeros((600, 600, 3), np.uint8), landmarks)
    on_chip = transform_points(landmarks, matrix)
    assert on_chip[0, 1] == pytest.approx(on_chip[1, 1], abs=1e-3)  # eyes exactly level
    assert (on_chip[0] + on_chip[1]) / 2 == pytest.approx(np.array(EYE_MIDPOINT), abs=1e-3)
    assert np.abs(on_chip - TEMPLATE_POINTS).max() < 20


def test_transform_points_and_box_agree_with_the_matrix():
    landmarks = 2.0 * TEMPLATE_POINTS @ rotation(30).T + np.array([100.0, 50.0])
    matrix = alignment_matrix(landmarks)
    points = np.array([[0.0, 0.0], [10.0, 20.0], [333.3, -12.5], [640.0, 480.0]])
    expected = (matrix @ np.hstack([points, np.ones((4, 1))]).T).T
    got = transform_points(points, matrix)
    assert got.shape == (4, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(got, cv2.transform(points[None], matrix)[0], rtol=1e-6, atol=1e-3)
    # a flat list of coordinates works as well
    np.testing.assert_allclose(transform_points(points.reshape(-1), matrix), got)

    box = np.array([100.0, 60.0, 300.0, 340.0])
    chip_box = transform_box(box, matrix)
    centre = transform_points([[200.0, 200.0]], matrix)[0]
    np.testing.assert_allclose((chip_box[:2] + chip_box[2:]) / 2, centre, atol=1e-3)
    np.testing.assert_allclose(chip_box[2:] - chip_box[:2], np.array([200.0, 280.0]) / 2.0, atol=1e-3)


@pytest.mark.parametrize("landmarks", [np.tile([[50.0, 50.0]], (5, 1)),
                                       np.full((5, 2), np.nan)], ids=["coincident", "nan"])
def test_degenerate_landmarks_raise(landmarks):
    with pytest.raises(ValueError):
        alignment_matrix(landmarks)


def test_head_pose_roll_follows_in_plane_rotation():
    frontal = head_pose(TEMPLATE_POINTS, (256, 256, 3))
    assert frontal.shape == (3,) and frontal.dtype == np.float32
    assert np.all(np.isfinite(frontal))
    centre = np.array([128.0, 128.0])
    tilted = head_pose((TEMPLATE_POINTS - centre) @ rotation(20).T + centre, (256, 256, 3))
    yaw, pitch, roll = tilted - frontal
    assert abs(roll) == pytest.approx(20, abs=1.0)
    assert abs(yaw) < 1.0 and abs(pitch) < 1.0
    assert abs(frontal[0]) < 3.0  # a symmetric face looks straight ahead (no yaw)


# --- triple box ----------------------------------------------------------------------------------

def test_triple_boxes_hand_computed_tall_box():
    # w = 100, h = 120 -> m = 20; nose (60, 90) -> t = 90 - 20 = 70
    boxes = triple_boxes(np.array([10, 20, 110, 140]), np.array([60, 90]))
    assert boxes.shape == (3, 4) and boxes.dtype == np.float32
    np.testing.assert_allclose(boxes, [[-10, 0, 130, 160],     # outer: grown by m
                                       [-10, 20, 130, 160],    # middle: side 2t on the nose
                                       [10, 40, 110, 140]])    # inner: side w on the nose


def test_triple_boxes_hand_computed_wide_box():
    # w = 80, h = 50 -> m = 30; nose (45.5, 32.5) -> t = 32.5 - 5 = 27.5
    boxes = triple_boxes([5.0, 5.0, 85.0, 55.0], [45.5, 32.5])
    np.testing.assert_allclose(boxes, [[-25, -25, 115, 85],
                                       [18, 5, 73, 60],
                                       [5.5, -7.5, 85.5, 72.5]])


# --- crops ---------------------------------------------------------------------------------------

def two_tone_image(height=100, width=100):
    """Left half gray 100, right half white: a wrapped crop would show white where black belongs."""
    image = np.full((height, width, 3), 100, np.uint8)
    image[:, width // 2:] = 255
    return image


def test_crop_box_half_off_the_left_edge_is_black_not_wrapped():
    crop = crop_box(two_tone_image(), [-50, 0, 50, 100])
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop[:, :31].max() == 0        # outside the image: black
    assert np.all(crop[:, 33:] == 100)    # the image's left (gray) half, not its white right edge


@pytest.mark.parametrize("box,black,inside", [
    # box, region of the crop that must be black, region that must be image content
    ([60, -40, 90, 60], (slice(0, 24), slice(None)), (slice(27, 64), slice(None))),   # top
    ([60, 50, 90, 150], (slice(33, 64), slice(None)), (slice(0, 31), slice(None))),   # bottom
    ([80, 0, 120, 40], (slice(None), slice(33, 64)), (slice(None), slice(0, 31))),    # right
    ([80, 80, 120, 120], (slice(33, 64), slice(33, 64)), (slice(0, 31), slice(0, 31))),  # corner
])
def test_crop_box_at_other_borders(box, black, inside):
    crop = crop_box(two_tone_image(), box)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop[black].max() == 0
    assert np.all(crop[inside] == 255)


@pytest.mark.parametrize("box", [[-200, -200, -100, -100], [-80, 10, -1, 90], [101, 0, 300, 100],
                                 [0, 150, 100, 250], [10, -90, 90, -10], [5000, 5000, 5100, 5100],
                                 [-60, -60, 0, 0]])
def test_crop_box_fully_outside_is_black(box):
    crop = crop_box(np.full((100, 100, 3), 255, np.uint8), box)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop.max() == 0


def test_crop_box_inside_is_the_exact_pixels():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 150, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_box(image, [30, 20, 94, 84]), image[20:84, 30:94])
    # float coordinates are rounded to pixels
    np.testing.assert_array_equal(crop_box(image, [29.6, 20.4, 93.5, 84.2]), image[20:84, 30:94])
    # a crop larger than 64 is resized down to 64x64, keeping its mean colour
    big = crop_box(image, [10, 0, 138, 112])
    assert big.shape == (64, 64, 3)
    np.testing.assert_allclose(big.mean(axis=(0, 1)), image[:112, 10:138].mean(axis=(0, 1)), atol=1.0)


@pytest.mark.parametrize("box", [[10, 10, 10, 10], [50, 50, 20, 20], [3.2, 3.2, 3.4, 3.4]])
def test_crop_box_degenerate_boxes_are_not_empty(box):
    crop = crop_box(np.full((60, 60, 3), 77, np.uint8), box)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert np.all(crop == 77)


def test_crop_box_grayscale_keeps_its_shape():
    gray = np.full((50, 50), 200, np.uint8)
    assert crop_box(gray, [-25, 0, 25, 50]).shape == (64, 64)
    assert crop_box(gray[:, :, None], [0, 0, 25, 50]).shape == (64, 64, 1)


def test_crop_triple_order_and_shape():
    chip = np.zeros((256, 256, 3), np.uint8)
    chip[:128] = (255, 0, 0)
    chip[128:] = (0, 0, 255)
    boxes = np.array([[0, 0, 256, 100], [0, 150, 256, 256], [-300, -300, -200, -200]], np.float32)
    crops = crop_triple(chip, boxes)
    assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.uint8
    assert np.all(crops[0] == (255, 0, 0))
    assert np.all(crops[1] == (0, 0, 255))
    assert crops[2].max() == 0
    for crop, box in zip(crops, boxes):
        np.testing.assert_array_equal(crop, crop_box(chip, box))


# --- the real detector ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def astronaut(astronaut_path):
    return load_image(astronaut_path)


@pytest.fixture
def detector(each_detector):
    """In this module, every test of the real detector runs with YuNet and with MTCNN."""
    return each_detector


@pytest.fixture
def astronaut_faces(astronaut, detector):
    return detector.detect(astronaut)


def test_astronaut_has_exactly_one_face(astronaut, astronaut_faces):
    assert astronaut.shape == (512, 512, 3) and astronaut.dtype == np.uint8
    assert len(astronaut_faces) == 1
    face = astronaut_faces[0]
    assert face.score > 0.9
    assert face.box.shape == (4,) and face.landmarks.shape == (5, 2)
    x1, y1, x2, y2 = face.box
    assert 40 < x2 - x1 < 200 and 40 < y2 - y1 < 200
    # landmarks inside the box, eyes above the nose above the mouth, left eye left of right eye
    lm = face.landmarks
    assert np.all((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2))
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])


def test_astronaut_prepared_chip(astronaut, detector, astronaut_faces):
    faces = prepare_faces(astronaut, detector)
    assert len(faces) == 1
    face = faces[0]
    np.testing.assert_allclose(face.box, astronaut_faces[0].box)
    assert face.chip.shape == (256, 256, 3) and face.chip.dtype == np.uint8
    np.testing.assert_array_equal(face.chip, decode_chip(face.chip_jpeg))
    assert face.chip_jpeg[:2] == b"\xff\xd8"

    left, right = face.chip_landmarks[0], face.chip_landmarks[1]
    assert left[1] == pytest.approx(102.4, abs=0.5) and right[1] == pytest.approx(102.4, abs=0.5)
    assert (left[0] + right[0]) / 2 == pytest.approx(128, abs=0.5)
    assert 60 < right[0] - left[0] < 95  # ~76 px like the template; a real face is not exact
    np.testing.assert_allclose(face.triple, triple_boxes(face.chip_box, face.chip_landmarks[2]))
    crops = face.crops()
    assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.uint8
    assert np.all(np.isfinite(face.pose)) and face.pose.shape == (3,)

    # The chip is BGR, the warp of the input: redo it and compare (JPEG noise only).
    matrix = alignment_matrix(face.landmarks)
    warped = cv2.warpAffine(astronaut, matrix, (256, 256), flags=cv2.INTER_LINEAR)
    assert np.abs(warped.astype(int) - face.chip.astype(int)).mean() < 3

    # A second detector pass on the chip (what the original did) agrees with the mapped geometry.
    again = detector.detect(face.chip)
    assert len(again) >= 1
    assert iou(again[0].box, face.chip_box) > 0.7
    # within 12 % of the eye distance (YuNet's landmarks move more than MTCNN's: 8 px here, MTCNN's < 6)
    eye_distance = float(np.linalg.norm(face.chip_landmarks[1] - face.chip_landmarks[0]))
    assert np.abs(again[0].landmarks - face.chip_landmarks).max() < 0.12 * eye_distance


def test_rgb_input_gives_the_same_face(astronaut, detector, astronaut_faces):
    rgb = np.ascontiguousarray(astronaut[:, :, ::-1])
    found = detector.detect(rgb, color="rgb")
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box, astronaut_faces[0].box, atol=1e-3)
    np.testing.assert_allclose(found[0].landmarks, astronaut_faces[0].landmarks, atol=1e-3)
    # the chip is BGR whatever the input order
    from_rgb = prepare_faces(rgb, detector, color="rgb")
    from_bgr = prepare_faces(astronaut, detector)
    np.testing.assert_array_equal(from_rgb[0].chip, from_bgr[0].chip)
    with pytest.raises(ValueError):
        detector.detect(astronaut, color="hsv")


def test_grayscale_and_four_channel_input(astronaut, detector, astronaut_faces):
    reference = astronaut_faces[0].box
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    for image in (gray, gray[:, :, None]):
        found = detector.detect(image)
        assert len(found) == 1 and iou(found[0].box, reference) > 0.8
    faces = prepare_faces(gray, detector)
    assert len(faces) == 1 and faces[0].chip.shape == (256, 256, 3)
    assert faces[0].crops().shape == (3, 64, 64, 3)

    bgra = cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 128  # the alpha channel is dropped, not mistaken for a colour
    found = detector.detect(bgra)
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box, reference, atol=1e-3)
    rgba = np.ascontiguousarray(bgra[:, :, [2, 1, 0, 3]])
    faces = prepare_faces(rgba, detector, color="rgb")
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, reference, atol=1e-3)
    assert faces[0].chip.shape == (256, 256, 3)


def test_no_face_in_blank_or_tiny_images(detector):
    assert detector.detect(np.full((300, 300, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []
    assert prepare_faces(np.full((300, 300), 128, np.uint8), detector) == []
    with pytest.raises(ValueError):
        detector.detect(np.zeros((20, 20, 2), np.uint8))


# --- image loading -------------------------------------------------------------------------------

def test_load_image_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.jpg"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not a jpeg, just some text\n" * 10)
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    for path, words in [(missing, "no such file"), (empty, "empty"), (text, "not a readable image"),
                        (folder, "folder")]:
        with pytest.raises(ImageReadError) as err:
            load_image(path)
        assert str(path) in str(err.value) and words in str(err.value)
    assert issubclass(ImageReadError, ValueError)


def test_load_image_converts_to_three_channel_bgr(tmp_path):
    gray = np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    loaded = load_image(tmp_path / "gray.png")
    assert loaded.shape == (5, 5, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[:, :, 1], gray)

    bgra = np.zeros((4, 6, 4), np.uint8)
    bgra[...] = (10, 20, 30, 40)  # B, G, R, alpha
    cv2.imwrite(str(tmp_path / "bgra.png"), bgra)
    loaded = load_image(str(tmp_path / "bgra.png"))
    assert loaded.shape == (4, 6, 3)
    assert tuple(loaded[0, 0]) == (10, 20, 30)

    deep = np.full((4, 4, 3), 1000, np.uint16)
    deep[0, 0] = 4000
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    loaded = load_image(tmp_path / "deep.png")
    assert loaded.dtype == np.uint8 and loaded.shape == (4, 4, 3)
    # 16-bit values are scaled to 8 bits as OpenCV does (value / 256)
    assert loaded[0, 0, 0] == 4000 // 256 and loaded[1, 1, 0] == 1000 // 256


def test_load_image_applies_exif_orientation(tmp_path, astronaut_path):
    Image = pytest.importorskip("PIL.Image")
    upright = cv2.imread(str(astronaut_path))
    stored = np.ascontiguousarray(np.rot90(upright))  # what the sensor wrote
    pil = Image.fromarray(stored[:, :, ::-1])
    exif = pil.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    pil.save(path, exif=exif, quality=95)
    shown = float(np.abs(cv2.imread(str(path)).astype(int) - upright).mean())
    assert shown < 3  # cv2.imread, like image viewers, shows the photo upright
    loaded = float(np.abs(load_image(path).astype(int) - upright).mean())
    assert loaded < 3, f"load_image returned the stored (sideways) pixels: mean difference {loaded:.1f}"


# --- what both detectors share: input conversion, large photos, the padded retry ----------------

def test_unambiguous_image_types_are_converted_and_the_rest_refused(astronaut, detector):
    from detect.detector import as_uint8

    reference = detector.detect(astronaut)[0].box
    as_float = astronaut.astype(np.float32) / 255.0  # skimage's convention: floats in 0..1
    for image in (as_float, astronaut.astype(np.float64), astronaut.astype(np.int64), astronaut.tolist(),
                  astronaut.astype(np.uint16) * 257):
        found = detector.detect(image)
        assert len(found) == 1 and iou(found[0].box, reference) > 0.95, type(image)
    np.testing.assert_array_equal(as_uint8(astronaut.astype(np.uint16) * 257), astronaut)
    np.testing.assert_array_equal(as_uint8(as_float), astronaut)
    with_nan = as_float.copy()
    with_nan[0, 0, 0] = np.nan
    for bad, words in [(with_nan, "NaN"), (np.full((50, 50, 3), np.inf), "NaN or infinite"),
                       (astronaut > 128, "bool"), (astronaut.astype(np.int64) - 300, "ranges from"),
                       (as_float * 1000, "ranges from"), (np.zeros((0, 5, 3)), "empty")]:
        with pytest.raises(ValueError, match=words):
            detector.detect(bad)
        with pytest.raises(ValueError, match=words):
            prepare_faces(bad, detector)


@pytest.mark.parametrize("size", [0, 5, -5, 9.5, True])
def test_smallest_face_size_is_checked_with_one_sentence(size):
    from detect import make_detector

    with pytest.raises(ValueError, match="at least 10 pixels"):
        make_detector("yunet", min_face_size=size)


def test_large_photo_is_detected_on_a_copy_and_mapped_back(astronaut, detector):
    """A 4096x4096 photo is detected on a 1280 px copy; box and landmarks come back in the photo's
    pixels, where the face is aligned from the full resolution."""
    small = detector.detect(astronaut)[0]
    large = cv2.resize(astronaut, (4096, 4096), interpolation=cv2.INTER_CUBIC)
    found = detector.detect(large)
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box, small.box * 8, atol=0.04 * (small.box[2] - small.box[0]) * 8)
    np.testing.assert_allclose(found[0].landmarks, small.landmarks * 8, atol=0.06 * 8 * (small.box[2] - small.box[0]))
    faces = prepare_faces(large, detector)
    assert faces[0].chip.shape == (256, 256, 3)
    assert faces[0].chip_landmarks[0][1] == pytest.approx(102.4, abs=0.5)


def test_padded_retry_only_for_crop_shaped_images(detector, monkeypatch):
    """An image with no face is searched twice when it could be a face crop (the padded retry), once
    when it is a long strip (padding a 10000x50 strip made a 15000x5050 image)."""
    seen = []
    original = type(detector)._run

    def spy(self, bgr, min_face):
        seen.append(bgr.shape[:2])
        return original(self, bgr, min_face)

    monkeypatch.setattr(type(detector), "_run", spy)
    assert detector.detect(np.full((300, 300, 3), 128, np.uint8)) == []
    assert seen == [(300, 300), (450, 450)]
    seen.clear()
    assert detector.detect(np.full((50, 10000, 3), 128, np.uint8)) == []
    assert seen == [(6, 1280)]  # downscaled, not padded


# --- faces that are not upright --------------------------------------------------------------------

UPRIGHT = TEMPLATE_POINTS * 0.5 + 100  # the template face, 0.5x, somewhere in an image


@pytest.mark.parametrize("points,words", [
    (UPRIGHT @ rotation(180).T, "eye line turned"),
    (UPRIGHT @ rotation(90).T, "eye line turned"),
    (UPRIGHT * [1, -1], "mouth not below the eyes"),  # mirrored top to bottom: eyes in order, mouth above
    (np.vstack([UPRIGHT[:2], UPRIGHT[0] - [30, 0], UPRIGHT[3:]]), "nose beside the eyes"),
    (np.tile(UPRIGHT[:1], (5, 1)), "both eyes at one point"),
])
def test_landmarks_that_cannot_be_an_upright_face_are_named(points, words):
    from detect.orientation import landmark_problem

    assert landmark_problem(UPRIGHT) is None
    assert landmark_problem(UPRIGHT @ rotation(40).T) is None  # a tilted head is fine
    problem = landmark_problem(points)
    assert problem is not None and words in problem


@pytest.mark.parametrize("degrees,code", [(180, cv2.ROTATE_180), (90, cv2.ROTATE_90_CLOCKWISE),
                                          (270, cv2.ROTATE_90_COUNTERCLOCKWISE)])
def test_a_turned_photo_gives_the_upright_face(astronaut, yunet_detector, degrees, code):
    """YuNet finds a smaller upright-looking face in an upside-down portrait (score 0.85 here, and an
    age of 60+): the second look in turned copies finds the real face, so the chip is the upright face."""
    from detect.detector import YuNetDetector

    upright = prepare_faces(astronaut, yunet_detector)[0]
    turned_image = cv2.rotate(astronaut, code)
    if degrees == 180:
        naive = YuNetDetector(check_orientation=False).detect(turned_image)
        assert naive and naive[0].score < 0.9  # what the check is for
    faces = prepare_faces(turned_image, yunet_detector)
    assert len(faces) == 1
    face = faces[0]
    assert face.rotation == (360 - degrees) % 360 and face.problem is None
    # the same face: eye distance as upright, chip close to the upright chip (landmarks move a little)
    eye = lambda f: np.linalg.norm(f.landmarks[1] - f.landmarks[0])  # noqa: E731
    assert eye(face) == pytest.approx(eye(upright), rel=0.12)
    assert np.abs(face.chip.astype(int) - upright.chip.astype(int)).mean() < 35
    # its points, turned back with the photo, land on the upright face's points
    h, w = astronaut.shape[:2]
    back = {180: lambda p: np.stack([w - p[:, 0], h - p[:, 1]], 1), 90: lambda p: np.stack([p[:, 1], h - p[:, 0]], 1),
            270: lambda p: np.stack([w - p[:, 1], p[:, 0]], 1)}[degrees](face.landmarks)
    assert np.abs(back - upright.landmarks).max() < 0.16 * eye(upright)  # YuNet moves points by ~0.1 of it
    np.testing.assert_allclose(face.chip_box[2:] - face.chip_box[:2], upright.chip_box[2:] - upright.chip_box[:2],
                               rtol=0.15)


def test_unturn_points_inverts_cv2_rotate():
    from detect.orientation import TURNS, unturn_points

    square = np.zeros((40, 40, 3), np.uint8)
    square[10, 30] = 255  # pixel at x=30, y=10
    for degrees, code in TURNS.items():
        turned = cv2.rotate(square, code)
        y, x = np.argwhere(turned[:, :, 0] == 255)[0]
        back = unturn_points(np.array([[x + 0.5, y + 0.5]]), degrees, 40)[0]  # pixel centres
        np.testing.assert_allclose(back, [30.5, 10.5], atol=1e-4)


def test_damaged_yunet_model_is_one_sentence(tmp_path):
    from detect.detector import YUNET_MODEL, DetectorError, YuNetDetector

    damaged = tmp_path / "yunet.onnx"
    damaged.write_bytes(YUNET_MODEL.read_bytes()[:5000])
    with pytest.raises(DetectorError, match="damaged or not an ONNX model file"):
        YuNetDetector(model_path=damaged)
    with pytest.raises(DetectorError, match="not found"):
        YuNetDetector(model_path=tmp_path / "missing.onnx")


def test_uint16_with_8_bit_values_is_cast_not_darkened(astronaut):
    from detect.detector import as_uint8

    np.testing.assert_array_equal(as_uint8(astronaut.astype(np.uint16)), astronaut)
