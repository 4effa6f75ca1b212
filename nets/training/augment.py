"""Training-time augmentation of one face, applied to its chip and its three crops together, and
the degradations of real photos (grey, colour cast, low resolution, JPEG) that it and `-test` use."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detect import CHIP_SIZE, crop_triple


# --- what real photos do to a face: each takes and returns a uint8 BGR chip ----------------------

def grayscale(chip: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def color_cast(chip: np.ndarray, gains) -> np.ndarray:
    """Each of B, G, R multiplied by its gain (a tint, as of old prints or a white balance gone wrong)."""
    return np.clip(chip.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)


def down_up(chip: np.ndarray, factor: float) -> np.ndarray:
    """Shrunk by `factor` and enlarged back: the detail of a face that had 1/factor of the pixels."""
    small = max(1, int(round(chip.shape[0] / factor)))
    reduced = cv2.resize(chip, (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (chip.shape[1], chip.shape[0]), interpolation=cv2.INTER_LINEAR)


def jpeg(chip: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", chip, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


SEPIA_GAINS = (0.72, 0.9, 1.08)  # B, G, R of a brown-toned print, applied to the grey image


@dataclass(frozen=True)
class PrintLook:
    """What an old scanned print does to a face: its tone, faded contrast, softness, grain, dark corners."""
    tone: str = "sepia"       # "grey", "sepia" or "faded" (colour kept at a fraction of its saturation)
    saturation: float = 0.4   # "faded": the share of the colour that is left
    contrast: float = 0.7     # 1 keeps it; a faded print lies between black and white
    lift: float = 40.0        # grey levels the blacks are raised by (the print's paper showing through)
    blur: float = 1.0         # Gaussian sigma in chip pixels (a print's and a scanner's softness)
    grain: float = 8.0        # standard deviation of the film grain, grey levels
    vignette: float = 0.3     # how much darker the corners are than the centre
    seed: int = 0             # of the grain


def old_print(chip: np.ndarray, look: PrintLook = PrintLook()) -> np.ndarray:
    """The chip as an old scanned print looks (PrintLook)."""
    image = chip.astype(np.float32)
    grey = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY).astype(np.float32)[:, :, None]
    if look.tone == "grey":
        image = np.repeat(grey, 3, axis=2)
    elif look.tone == "sepia":
        image = grey * np.asarray(SEPIA_GAINS, np.float32)
    elif look.tone == "faded":
        image = grey + look.saturation * (image - grey)
    else:
        raise ValueError(f"tone must be 'grey', 'sepia' or 'faded', not {look.tone!r}")
    image = image * look.contrast + look.lift
    if look.blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), look.blur)
    if look.grain > 0:  # film grain: the same for the three channels
        image += np.random.default_rng(look.seed).normal(0, look.grain, image.shape[:2] + (1,)).astype(np.float32)
    if look.vignette > 0:
        height, width = image.shape[:2]
        y, x = np.ogrid[-1:1:height * 1j, -1:1:width * 1j]
        image *= (1 - look.vignette * (x * x + y * y) / 2).astype(np.float32)[:, :, None]
    return np.clip(image, 0, 255).astype(np.uint8)


def random_print_look(rng: np.random.Generator) -> PrintLook:
    """An old-print look drawn at random: grey, sepia or faded colour, contrast 0.55-0.9 and a lift,
    blur 0.4-1.6 px, grain 3-12 grey levels, a vignette of up to 0.4."""
    contrast = rng.uniform(0.55, 0.9)
    return PrintLook(tone=("grey", "sepia", "faded")[rng.integers(3)], saturation=rng.uniform(0.2, 0.6),
                     contrast=contrast, lift=(1 - contrast) * rng.uniform(40, 200), blur=rng.uniform(0.4, 1.6),
                     grain=rng.uniform(3, 12), vignette=rng.uniform(0, 0.4), seed=int(rng.integers(2**31)))


# The degraded copies of the validation faces that `-test` reports (robustness as a number).
DEGRADATIONS = {
    "grayscale": grayscale,
    "4x down-and-up": lambda chip: down_up(chip, 4),
    "JPEG quality 30": lambda chip: jpeg(chip, 30),
    "old print": old_print,  # sepia, contrast 0.7 with a lift of 40, blur 1 px, grain 8, vignette 0.3
}


@dataclass(frozen=True)
class AugmentConfig:
    erase_prob: float = 0.2          # random erasing, per crop (-d)
    erase_area: tuple = (0.06, 0.10)  # share of the crop's area
    erase_aspect: tuple = (0.5, 2.0)
    flip_prob: float = 0.5
    contrast: tuple = (0.5, 2.5)      # alpha
    brightness: float = 50.0          # beta in +-brightness
    rotation: float = 15.0            # degrees
    # what real photos do (--robust): each with its probability, per face
    grayscale_prob: float = 0.0
    cast_prob: float = 0.0
    cast_gain: float = 0.2            # each channel's gain in 1 +- this
    low_res_prob: float = 0.0
    low_res_factor: tuple = (1.5, 5.0)
    jpeg_prob: float = 0.0
    jpeg_quality: tuple = (20, 90)
    box_jitter_prob: float = 0.0      # the triple box moved and scaled as a detector's box jitters
    box_shift: float = 0.03           # standard deviation, in box sides
    box_scale: float = 0.05           # standard deviation of the log scale
    align_jitter_prob: float = 0.0    # the chip re-aligned as from landmarks a few pixels off
    align_shift: float = 0.02         # standard deviation, in chip sides
    align_scale: float = 0.04         # standard deviation of the log scale
    align_angle: float = 3.0          # standard deviation, degrees
    old_print_prob: float = 0.0       # the face as an old scanned print (random_print_look), per face

    @classmethod
    def robust(cls, erase_prob: float = 0.2) -> "AugmentConfig":
        """The augmentation for photos beyond clean chips (--robust): grey, tints, low resolution,
        JPEG, box jitter, on top of the original's."""
        return cls(erase_prob=erase_prob, grayscale_prob=0.15, cast_prob=0.2, low_res_prob=0.25, jpeg_prob=0.25,
                   box_jitter_prob=0.5, align_jitter_prob=0.5)


def random_erase(crop: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> None:
    """Fill a random rectangle of the crop with random values, in place."""
    height, width = crop.shape[:2]
    area = rng.uniform(*config.erase_area) * height * width
    aspect = rng.uniform(*config.erase_aspect)
    h = int(min(height, max(1, round(np.sqrt(area * aspect)))))
    w = int(min(width, max(1, round(np.sqrt(area / aspect)))))
    y = int(rng.integers(0, height - h + 1))
    x = int(rng.integers(0, width - w + 1))
    crop[y:y + h, x:x + w] = rng.integers(0, 256, size=(h, w, crop.shape[2]), dtype=np.uint8)


def jitter_boxes(triple: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """The three boxes shifted and scaled together about their centres, as a jittering detector
    box and landmarks move them."""
    triple = np.asarray(triple, np.float32).reshape(3, 4)
    side = float(triple[2, 2] - triple[2, 0])  # the inner box: the face's width
    shift = rng.normal(0, config.box_shift, 2) * side
    scale = float(np.exp(rng.normal(0, config.box_scale)))
    centres = (triple[:, :2] + triple[:, 2:]) / 2
    halves = (triple[:, 2:] - triple[:, :2]) / 2 * scale
    return np.concatenate([centres + shift - halves, centres + shift + halves], axis=1).astype(np.float32)


def jitter_alignment(chip: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """The chip shifted, scaled and turned a little about its centre: what alignment from landmarks
    a few pixels off gives (two detectors' eyes differ by 0.06-0.08 eye distances on the same face)."""
    angle = rng.normal(0, config.align_angle)
    scale = float(np.exp(rng.normal(0, config.align_scale)))
    matrix = cv2.getRotationMatrix2D((CHIP_SIZE / 2, CHIP_SIZE / 2), angle, scale)
    matrix[:, 2] += rng.normal(0, config.align_shift * CHIP_SIZE, 2)
    return cv2.warpAffine(chip, matrix, (chip.shape[1], chip.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def degrade(chip: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """The photo degradations of config, each drawn with its probability."""
    if rng.random() < config.grayscale_prob:
        chip = grayscale(chip)
    if rng.random() < config.cast_prob:
        chip = color_cast(chip, 1 + rng.uniform(-config.cast_gain, config.cast_gain, 3))
    if rng.random() < config.low_res_prob:
        chip = down_up(chip, rng.uniform(*config.low_res_factor))
    if config.old_print_prob and rng.random() < config.old_print_prob:  # no draw when off: --robust as before
        chip = old_print(chip, random_print_look(rng))
    if rng.random() < config.jpeg_prob:
        chip = jpeg(chip, rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    return chip


def augmented_crops(chip: np.ndarray, triple: np.ndarray, rng: np.random.Generator,
                    config: AugmentConfig) -> np.ndarray:
    """The three crops of a face with one photometric or geometric change shared by all three,
    the photo degradations, alignment and box jitter of config, a horizontal flip, and random
    erasing inside each crop.

    Flipping the three crops equals flipping the chip and mirroring the boxes (x -> W - x), so the
    crops stay consistent with each other.
    """
    chip = degrade(chip, rng, config)
    if rng.random() < config.align_jitter_prob:
        chip = jitter_alignment(chip, rng, config)
    if rng.random() < config.box_jitter_prob:
        triple = jitter_boxes(triple, rng, config)
    choice = rng.integers(3)  # 0: contrast/brightness, 1: rotation, 2: nothing
    if choice == 1:
        angle = rng.uniform(-config.rotation, config.rotation)
        matrix = cv2.getRotationMatrix2D((CHIP_SIZE / 2, CHIP_SIZE / 2), angle, 1.0)
        chip = cv2.warpAffine(chip, matrix, (chip.shape[1], chip.shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    crops = crop_triple(chip, triple)
    if choice == 0:
        alpha = rng.uniform(*config.contrast)
        beta = rng.uniform(-config.brightness, config.brightness)
        crops = cv2.convertScaleAbs(crops.reshape(-1, crops.shape[-1]), alpha=alpha, beta=beta).reshape(crops.shape)
    if rng.random() < config.flip_prob:
        crops = crops[:, :, ::-1]
    crops = np.ascontiguousarray(crops)
    for crop in crops:
        if rng.random() < config.erase_prob:
            random_erase(crop, rng, config)
    return crops
