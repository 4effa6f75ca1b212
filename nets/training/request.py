"""A training request checked before any data is read: everything that would make a run end badly
(a trained model in the way, a run that cannot be resumed, a -p model or teacher that cannot be used,
numbers that cannot train, another run writing to the same -s) is refused here, in one sentence.

train() calls check_request() and then only trains.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from nets.network.contract import artifact
from nets.training.config import DEFAULT_EPOCHS, TrainConfig, TrainingError


@dataclass
class CheckedRequest:
    cfg: TrainConfig            # with --resume: the settings of the run it continues
    state: dict                 # the resumed run's state, or {} for a new run
    parent: object = None       # the -p model (Keras), for a new run started from one
    teacher: object = None      # the --teacher model (Keras)


def check_request(cfg: TrainConfig, log=print) -> CheckedRequest:
    """The request as it will run, or TrainingError saying why it cannot. Loads the -p and teacher
    models (so TensorFlow's devices must be configured first); reads no training data."""
    from nets.network.model import describe, load_c3ae
    from nets.training.data import read_split

    if cfg.epochs is None and not cfg.resume:  # not given; with --resume: the run's own (_resumable_state)
        cfg = replace(cfg, epochs=DEFAULT_EPOCHS)
    check_numbers(cfg)
    if cfg.epochs == 0 and cfg.ema:
        log("note: --ema does nothing without training (--epochs 0); not recorded")
        cfg = replace(cfg, ema=False)
    save_path = Path(cfg.save_path)
    if save_path.is_dir():
        raise TrainingError(f"-s {save_path} is a folder; give a file name, e.g. {save_path / 'model.keras'}")
    if save_path.suffix != ".keras":
        raise TrainingError(f"-s {save_path}: models are saved as .keras files; give a name that ends in .keras")
    state_path, last_path = artifact(save_path, ".state.json"), artifact(save_path, ".last.keras")
    state = {}
    if cfg.resume:
        state, cfg = _resumable_state(cfg, state_path, last_path, log)
    else:
        _refuse_to_replace(cfg, save_path, state_path, last_path)
    parent = load_c3ae(cfg.pretrain_path) if cfg.pretrain_path and not cfg.resume else None
    if parent is not None and cfg.gender and describe(parent)["variant"] == "age":
        if cfg.epochs == 0:
            raise TrainingError(f"{cfg.pretrain_path} is an age model: its weights in an age + gender build would "
                                "answer gender untrained; train it (--epochs N) or use nets/C3AE.py")
        log(f"note: {cfg.pretrain_path} is an age model; the gender head starts untrained")
    new_split = not cfg.resume and not artifact(save_path, ".split.json").exists()
    parent_split = artifact(cfg.pretrain_path, ".split.json") if cfg.pretrain_path else None
    advice = "give the NAME.split.json of the model whose sides are to be kept"
    if new_split and not cfg.split_from and parent_split is not None and parent_split.exists():
        # a split of its own would put faces the -p model trained on among the validation faces
        log(f"note: the new split keeps the sides of {parent_split} (the -p model's), so that no face it "
            "trained on is validated on; --split-from chooses another")
        cfg = replace(cfg, split_from=str(parent_split))
        advice = "it is the -p model's own split, kept by default: restore it, or give --split-from with another"
    if cfg.split_from and new_split:
        read_split(cfg.split_from, advice)
    teacher = load_teacher(cfg.teacher, cfg) if cfg.teacher and cfg.epochs > 0 else None
    return CheckedRequest(cfg, state, parent, teacher)


def check_numbers(cfg: TrainConfig) -> None:
    """Numbers that cannot train: a NaN learning rate used to run a whole epoch of NaN and leave a split
    and a log behind; a negative loss weight trains the model away from the labels."""
    if cfg.epochs is not None and (cfg.epochs < 0 or (cfg.epochs == 0 and not cfg.pretrain_path and not cfg.resume)):
        raise TrainingError("--epochs 0 trains nothing; it writes a -p model in another build (e.g. --mirror)"
                            if cfg.epochs == 0 else f"--epochs must be 0 or more, not {cfg.epochs}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise TrainingError(f"-lr must be a number above 0, not {cfg.lr}")
    weights = {"-w": [cfg.weight_factor]} | ({"--loss-weights": list(cfg.loss_weights)} if cfg.gender else {})
    for flag, values in weights.items():
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise TrainingError(f"{flag} must be 0 or more, not {' '.join(f'{v:g}' for v in values)}")
    if cfg.gender and not any(cfg.loss_weights):
        raise TrainingError("--loss-weights 0 0 0 trains nothing (every loss weighs 0); give at least one above 0")
    if cfg.width < 1:
        raise TrainingError(f"--width must be 1 or more, not {cfg.width}")
    if not 0.0 <= cfg.teacher_weight <= 1.0:
        raise TrainingError(f"--teacher-weight must be between 0 and 1, not {cfg.teacher_weight}")
    if cfg.prior_correction and cfg.epochs != 0:
        raise TrainingError("--prior-correction corrects a trained model's answers; give it with --epochs 0 -p MODEL")


class RunLock:
    """NAME.lock beside the model while a run writes there: a second run into the same -s is refused
    (two at once both ended with exit 0, the state file of one and the model, split and log of the
    other). A lock left by a run that no longer exists (killed) is taken over with a note."""

    def __init__(self, save_path, log=print):
        self.path, self.log, self.held = artifact(save_path, ".lock"), log, False

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                if owner is not None:
                    raise TrainingError(f"another training run (process {owner}) is writing to {self.path.parent} "
                                        f"as {self.path.name[:-len('.lock')]}; wait for it, or give another -s")
                self.log(f"note: {self.path} was left by a run that has ended; taking it over")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(handle, "w") as lock:
                lock.write(str(os.getpid()))
            self.held = True
            return self
        raise TrainingError(f"could not take {self.path}")

    def _owner(self) -> int | None:
        """The process that holds the lock, if it still runs."""
        try:
            pid = int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        if pid <= 0 or pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # another user's process: it runs
            pass
        return pid

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
        return False


def load_teacher(path, cfg: TrainConfig):
    """A C3AE model whose answers become part of the training targets (knowledge distillation)."""
    from nets.network.model import as_float32, describe, load_c3ae

    teacher = as_float32(load_c3ae(path))
    about = describe(teacher)
    if about["bins"] != cfg.bins:
        raise TrainingError(f"the teacher {path} has {about['bins']} age bins, this model {cfg.bins}")
    if cfg.gender and about["variant"] != "age+gender":
        raise TrainingError(f"the teacher {path} is an age model; an age + gender model needs one that also "
                            "answers gender")
    teacher.trainable = False
    return teacher


# What --resume takes from the run it continues, whatever the command line says: the saved optimizer
# holds the learning rate and its schedule, and the rest decide what the remaining epochs learn.
RESUMED_SETTINGS = {"batch_size": "-b", "lr": "-lr", "cosine_lr": "--cosine-lr", "ema": "--ema",
                    "augment": "augmentation", "robust": "--robust", "erase": "-d", "seed": "--seed",
                    "steps_per_epoch": "--steps-per-epoch", "smooth_gender": "gender label smoothing",
                    "loss": "--loss", "weight_factor": "-w", "loss_weights": "--loss-weights",
                    "age_cap": "--age-cap", "lds": "--lds", "lds_sigma": "--lds-sigma", "old_print": "--old-print",
                    "low_res": "--low-res", "grey": "--grey"}


def _resumable_state(cfg: TrainConfig, state_path: Path, last_path: Path, log=print) -> tuple[dict, TrainConfig]:
    """The state of the run --resume continues and the settings it goes on with (RESUMED_SETTINGS
    from that run); refused if its files are missing, it is of the other kind or its teacher differs."""
    if not last_path.exists() or not state_path.exists():
        raise TrainingError(f"--resume needs {last_path} and {state_path} from an earlier run")
    state = json.loads(state_path.read_text())
    then = state["config"]
    if bool(then.get("gender")) != cfg.gender:
        kind, script = ("an age + gender", "nets/C3AE_expand.py") if then.get("gender") else ("an age", "nets/C3AE.py")
        raise TrainingError(f"{last_path} is {kind} run; resume it with {script}")
    teacher = (then.get("teacher"), then.get("teacher_weight", TrainConfig.teacher_weight))
    if teacher != (cfg.teacher, cfg.teacher_weight):
        raise TrainingError(f"the run being resumed was trained with --teacher {teacher[0]} --teacher-weight "
                            f"{teacher[1]}; resume it with the same")
    if cfg.epochs is None:  # --epochs not given: on to the run's own (the default 250 once ran a 4-epoch run to 250)
        cfg = replace(cfg, epochs=then["epochs"])
    saved = {key: tuple(then[key]) if isinstance(then[key], list) else then[key]
             for key in RESUMED_SETTINGS if key in then}
    differ = [f"{RESUMED_SETTINGS[key]} {value} (not {getattr(cfg, key)})"
              for key, value in saved.items() if value != getattr(cfg, key)]
    if differ:
        log(f"note: --resume goes on as the run was started: {', '.join(differ)}; to train on with other "
            f"settings, start a new run from it (-p {last_path} -s NEW.keras)")
    if then.get("cosine_lr") and then.get("epochs") != cfg.epochs:
        log(f"note: the learning rate follows the cosine schedule of the run's own --epochs {then.get('epochs')}")
    return state, replace(cfg, **saved)


def _refuse_to_replace(cfg: TrainConfig, save_path: Path, state_path: Path, last_path: Path) -> None:
    """A new run never writes over a trained model: its best and last models and its history would be gone."""
    if cfg.pretrain_path and Path(cfg.pretrain_path).resolve() == save_path.resolve():
        raise TrainingError(f"-s {save_path} is the -p model; a new run would replace the model it starts from: "
                            "give another -s")
    held = [path.name for path in (save_path, last_path, state_path) if path.exists()]
    if held:
        try:
            state = json.loads(state_path.read_text())
            what = f" ({state['epochs_done']} epochs, best validation MAE {state['best_val_mae']:.3f})"
        except (OSError, ValueError, KeyError, TypeError):
            what = ""
        raise TrainingError(f"-s {save_path}: {', '.join(held)} of a trained model{what} are already there; give "
                            "another -s, add --resume to go on training it, or remove them yourself")
