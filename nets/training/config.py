"""How a training run is asked for (TrainConfig: every flag of nets/C3AE.py and nets/C3AE_expand.py)
and the one error it ends with when it cannot go on (TrainingError)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from nets.network.contract import TRUNK_WIDTH


class TrainingError(RuntimeError):
    pass


DEFAULT_EPOCHS = 250  # the original's


@dataclass
class TrainConfig:
    dataset: str = "dataset/data"
    source: str = "utk"
    save_path: str = "runs/c3ae.keras"
    pretrain_path: str | None = None
    gender: bool = False
    se: bool = False
    white: bool = False
    category: int = 10
    activation: str = "relu"
    se_pooling: str = "avg"
    neck: bool = False
    width: int = TRUNK_WIDTH               # trunk channels (the paper's 32; wider only for teachers)
    mirror: bool = False
    loss: str = "kl"
    weight_factor: float = 10.0            # alpha: weight of the W1 loss (age-only model)
    loss_weights: tuple = (1.0, 10.0, 30.0)  # age, W1, gender (age+gender model)
    smooth_gender: bool = True
    batch_size: int = 50
    epochs: int | None = DEFAULT_EPOCHS   # None: 250 for a new run, the run's own for --resume
    lr: float = 0.002
    cosine_lr: bool = False
    ema: bool = False                      # validate and keep the best model with averaged weights
    erase: float = 0.2
    augment: bool = True
    robust: bool = False                   # photo degradations and box jitter too (AugmentConfig.robust)
    split_from: str | None = None          # keep the sides of this earlier split in a new one
    seed: int = 2019
    val_split: float = 0.2
    resume: bool = False
    fp16: bool = False
    strategy: str = "default"
    cpu_devices: int = 1
    gpu: bool = False
    steps_per_epoch: int | None = None
    teacher: str | None = None             # learn W1 (and gender) partly from this model's answers
    teacher_weight: float = 0.5            # its share of those targets; the true labels keep the rest
    age_cap: int | None = None             # at most this many training faces per year of age and source
    lds: str | None = None                 # age and W1 loss weights from the smoothed age density: inverse, sqrt
    lds_sigma: float = 2.0                 # that density's Gaussian smoothing, in years
    old_print: float = 0.0                 # share of training faces made to look like old scanned prints
    low_res: float | None = None           # share of training faces shrunk 1.5-5x and enlarged back (None: --robust's)
    grey: float | None = None              # share of training faces made grey (None: --robust's)
    prior_correction: float | str = 0.0    # --epochs 0: W1 corrected for the age prior this strongly ("auto": chosen on validation)
    command: str = field(default_factory=lambda: " ".join(["python"] + sys.argv))

    @property
    def bins(self) -> int:
        return self.category + 2

