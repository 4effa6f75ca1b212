"""Training-time augmentation of one face, applied to its chip and its three crops together."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detect import CHIP_SIZE, crop_triple


@dataclass(frozen=True)
class AugmentConfig:
    erase_prob: float = 0.2          # random erasing, per crop (-d)
    erase_area: tuple = (0.06, 0.10)  # share of the crop's area
    erase_aspect: tuple = (0.5, 2.0)
    flip_prob: float = 0.5
    contrast: tuple = (0.5, 2.5)      # alpha
    brightness: float = 50.0          # beta in +-brightness
    rotation: float = 15.0            # degrees


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


def augmented_crops(chip: np.ndarray, triple: np.ndarray, rng: np.random.Generator,
                    config: AugmentConfig) -> np.ndarray:
    """The three crops of a face with one photometric or geometric change shared by all three,
    a horizontal flip, and random erasing inside each crop.

    Flipping the three crops equals flipping the chip and mirroring the boxes (x -> W - x), so the
    crops stay consistent with each other.
    """
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
