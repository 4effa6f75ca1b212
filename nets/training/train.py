"""The trainer shared by nets/C3AE.py (age) and nets/C3AE_expand.py (age + gender).

Files written beside the model path S = NAME.keras:
  NAME.keras         best model by validation age MAE (weights only: no optimizer state)
  NAME.last.keras    the last epoch, with optimizer state (for --resume)
  NAME.split.json    the train/validation split (keys of faces), reused by --resume and -test
  NAME.log.csv       one line per epoch;  NAME.curves.png  the training curves
  NAME.state.json    how the model was trained and where it stands (epochs, best MAE, command)
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from nets.network.contract import artifact
from nets.training.augment import AugmentConfig
from nets.training.config import TrainConfig, TrainingError
from nets.training.request import RunLock, check_request


def pretrain_record(pretrain_path) -> dict:
    """What a -p model was: its own state file (command, epochs, history and, in turn, the model it
    was started from), tagged with its path. Model cards list these stages in order."""
    record = {"path": str(pretrain_path)}
    state_path = artifact(pretrain_path, ".state.json")
    try:
        record.update(json.loads(state_path.read_text()))
    except FileNotFoundError:
        pass  # a model from elsewhere: only its path is known
    except (OSError, ValueError) as exc:
        record["note"] = f"its state file {state_path} could not be read ({exc})"
    return record


def training_stages(state: dict) -> list:
    """The runs that made a model, earliest first (the -p chain of its state file)."""
    stages = []
    while state is not None:
        stages.insert(0, state)
        state = state.get("pretrained_from")
    return stages


def all_epochs(state: dict) -> tuple[list, list]:
    """The history of every stage, epochs numbered on across stages, and where each later stage
    started (for the curves of a fine-tuned model)."""
    history, starts = [], []
    for k, stage in enumerate(training_stages(state)):
        if k and stage.get("history"):
            starts.append(len(history) + 0.5)
        offset = len(history)
        history += [{**h, "epoch": offset + h["epoch"]} for h in stage.get("history", [])]
    return history, starts


def configure_devices(gpu: bool, cpu_devices: int = 1, fp16: bool = False):
    """Call before anything touches TensorFlow's devices."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpu and not gpus:
        print("note: -gpu given but no GPU is visible; training on the CPU", file=sys.stderr)
    if not gpu and gpus:
        tf.config.set_visible_devices([], "GPU")
    for device in (gpus if gpu else []):
        tf.config.experimental.set_memory_growth(device, True)
    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_devices)])
    keras.mixed_precision.set_global_policy("mixed_float16" if fp16 else "float32")


def make_strategy(name: str):
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    raise ValueError(f"--strategy must be 'default' or 'mirrored', not {name!r}")


def transfer_weights(source, target) -> int:
    """Copy weights layer by layer where names and shapes agree, inside nested models (the trunk)
    too; returns how many layers were copied."""
    copied = 0
    for layer in target.layers:
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        if hasattr(layer, "layers") and hasattr(other, "layers"):
            copied += transfer_weights(other, layer)
            continue
        theirs, ours = other.get_weights(), layer.get_weights()
        if ours and len(theirs) == len(ours) and all(a.shape == b.shape for a, b in zip(theirs, ours)):
            layer.set_weights(theirs)
            copied += 1
    return copied


def with_teacher(train_ds, teacher, weight: float):
    """Training batches whose W1 and gender targets are (1 - weight) * label + weight * the teacher's
    answer on the same (augmented) crops; the age target stays the true age."""
    mixed = {"W1", "gender"}

    def mix(crops, labels):
        answer = teacher(crops, training=False)
        return crops, {key: (1.0 - weight) * value + weight * answer[key] if key in mixed else value
                       for key, value in labels.items()}

    return train_ds.map(mix)


EMA_MOMENTUM = 0.99  # about the last 100 steps


def compile_model(model, cfg: TrainConfig, train_rows, steps_per_epoch: int):
    import keras

    from nets.training.data import targets
    from nets.network.losses import w1_loss

    lr = cfg.lr
    if cfg.cosine_lr:
        lr = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=max(1, cfg.epochs * steps_per_epoch),
                                                     alpha=0.01)
    losses = {"age": keras.losses.MeanAbsoluteError(name="l1"),
              "W1": w1_loss(cfg.loss, targets(train_rows, cfg.bins, False)["W1"])}
    if cfg.gender:
        weights = dict(zip(("age", "W1", "gender"), cfg.loss_weights))
        losses["gender"] = keras.losses.CategoricalCrossentropy(name="gender_ce")
    else:
        weights = {"age": 1.0, "W1": cfg.weight_factor}
    metrics = {"age": [keras.metrics.MeanAbsoluteError(name="mae")]}
    if cfg.gender:
        metrics["gender"] = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    optimizer = keras.optimizers.Adam(lr, use_ema=cfg.ema, ema_momentum=EMA_MOMENTUM)
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, metrics=metrics)


def ema_optimizer(model):
    """The optimizer of a compiled model if it keeps moving averages of the weights (--ema), else None."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # -fp16 wraps it for loss scaling
    return optimizer if getattr(optimizer, "use_ema", False) else None


def averaged_copy(model):
    """A weights-only copy of a model being trained; with --ema its trainable weights are the
    optimizer's moving averages (what validation saw), its batch-norm statistics the model's own."""
    import keras

    from nets.network.model import rebuild

    copy = rebuild(model)
    optimizer = ema_optimizer(model)
    if optimizer is not None:
        averages = {v.path: a for v, a in zip(optimizer._trainable_variables,
                                              optimizer._model_variables_moving_average)}
        missing = [w.path for w in copy.trainable_weights if w.path not in averages]
        if missing:  # the saved model would not be the one validation measured
            raise TrainingError(f"no moving average for {', '.join(missing[:3])}; cannot save the --ema model")
        for weight in copy.trainable_weights:
            weight.assign(keras.ops.cast(averages[weight.path], "float32"))
    return copy


def _checkpoint_callback(cfg: TrainConfig, state: dict):
    import keras

    from nets.network.model import ModelFileError, check_finite

    class SafeCheckpoint(keras.callbacks.Callback):
        """Saves best and last models, never a non-finite one, and stops on a NaN loss. The state
        file it writes after each epoch counts the training time so far, so a run that is stopped
        and resumed keeps the time of its first part."""

        def __init__(self):
            super().__init__()
            self.failure = None
            self.counted_until = time.time()

        def count_time(self):
            now = time.time()
            state["seconds"] = round(state.get("seconds", 0) + now - self.counted_until, 1)
            self.counted_until = now

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.failure = f"the loss became {loss} at batch {batch}; training stopped, nothing saved"
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if self.failure:
                return
            try:
                check_finite(self.model, "the model being trained")
            except ModelFileError as exc:
                self.failure = str(exc)
                self.model.stop_training = True
                return
            val_mae = float(logs.get("val_age_mae", np.nan))
            improved = math.isfinite(val_mae) and val_mae < state.get("best_val_mae", np.inf)
            if improved:
                state.update(best_val_mae=val_mae, best_epoch=epoch + 1)
                _save(averaged_copy(self.model), cfg.save_path)  # weights only
            _save(self.model, artifact(cfg.save_path, ".last.keras"))
            state["epochs_done"] = epoch + 1
            self.count_time()
            state["history"] = state.get("history", []) + [
                {k: round(float(v), 5) for k, v in logs.items() if np.isscalar(v)} | {"epoch": epoch + 1}]
            _write_json(artifact(cfg.save_path, ".state.json"), state)

    return SafeCheckpoint()


def _save(model, path):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _write_json(path, data):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _write_untrained(model, cfg: TrainConfig, state: dict, val_ds, log) -> dict:
    """--epochs 0 -p PARENT: PARENT's weights in this build (e.g. with --mirror), validated and saved."""
    from nets.network.model import rebuild
    from nets.evaluation.plots import plot_curves

    logs = model.evaluate(val_ds, verbose=0, return_dict=True)
    state.update(best_val_mae=float(logs["age_mae"]), best_epoch=0, epochs_done=0, history=[], seconds=0.0,
                 validation_without_training={f"val_{k}": round(float(v), 5) for k, v in logs.items()})
    _save(rebuild(model), cfg.save_path)
    _write_json(artifact(cfg.save_path, ".state.json"), state)
    plot_curves(*all_epochs(state), artifact(cfg.save_path, ".curves.png"), gender=cfg.gender)
    log(f"no training (--epochs 0): validation MAE {state['best_val_mae']:.3f}; written to {cfg.save_path}")
    return state


def _note_stale_files(save_path: Path, since: float, log) -> None:
    """Exports, evaluations and the card made from the model before this run no longer describe it."""
    if not save_path.exists() or save_path.stat().st_mtime < since:
        return  # the best model did not change
    stale = sorted(path.name for pattern in (".*.tflite", ".eval.json", ".*.eval.json", ".card.json")
                   for path in save_path.parent.glob(artifact(save_path, pattern).name)
                   if path.stat().st_mtime < since)
    if stale:
        log(f"note: {', '.join(stale)} were made from the model before this run and do not describe it; "
            "make them again (-fz, -test, nets/model_card.py)")


def balanced_training(train_rows, cfg: TrainConfig, log) -> tuple:
    """The training faces after --age-cap, and their --lds loss weights (None without)."""
    from nets.training.balance import cap_per_age, lds_weights

    if cfg.age_cap:
        capped = cap_per_age(train_rows, cfg.age_cap, cfg.seed)
        log(f"--age-cap {cfg.age_cap}: {len(capped)} of the {len(train_rows)} training faces (at most "
            f"{cfg.age_cap} per year of age and source)")
        train_rows = capped
    if not cfg.lds:
        return train_rows, None
    weights = lds_weights(train_rows["age"].to_numpy(), cfg.lds, cfg.lds_sigma)
    log(f"--lds {cfg.lds}: age and W1 loss weights {weights.min():.2f} to {weights.max():.2f} (average 1)")
    return train_rows, weights


PRIOR_STRENGTHS = [round(0.1 * k, 1) for k in range(11)]  # tried by --prior-correction auto
PRIOR_FLOOR = 1e-3  # added to every bin's share, so that a bin no training face reaches can be corrected too


def training_prior(train_rows, bins: int) -> list:
    """The training faces' share of each bin of the two-point distribution (floored at PRIOR_FLOOR)."""
    from nets.training.data import targets

    share = targets(train_rows, bins, False)["W1"].mean(axis=0) + PRIOR_FLOOR
    return (share / share.sum()).tolist()


def choose_prior_strength(sweep: dict, mae_allowance: float = 0.3) -> float:
    """From {strength: {source: {"mae", "balanced_mae"}}} (0 among them): the strength with the lowest
    balanced MAE averaged over the sources, among those whose plain MAE is at most mae_allowance years
    worse than without correction on every source."""
    plain = sweep[0.0]
    if any(m["balanced_mae"] is None for m in plain.values()):
        raise TrainingError("--prior-correction auto needs a balanced MAE of every source (20 validation faces in "
                            "some decade of 0-79); too few validation faces here: give a strength")
    allowed = [t for t, m in sweep.items() if all(m[s]["mae"] <= plain[s]["mae"] + mae_allowance for s in m)]
    return min(allowed, key=lambda t: np.mean([m["balanced_mae"] for m in sweep[t].values()]))


def with_prior_correction(model, strength, train_rows, val_rows, bins: int, state: dict, log):
    """The model with W1 corrected for the training age prior (PriorCorrection); strength "auto": the
    one of PRIOR_STRENGTHS with the lowest balanced MAE averaged over the sources whose plain MAE stays
    within 0.3 years of the uncorrected model's on every source (on the validation faces)."""
    from nets.evaluation.evaluate import metrics_by_source, predict_rows
    from nets.network.model import describe, rebuild

    prior = training_prior(train_rows, bins)
    if strength == "auto":
        w1 = predict_rows(model, val_rows)["W1"]
        kernel, bias = (np.asarray(w) for w in model.get_layer("age").get_weights())
        sweep = {}
        for tried in PRIOR_STRENGTHS:
            corrected = w1 * np.power(prior, -tried)
            ages = (corrected / corrected.sum(axis=1, keepdims=True)) @ kernel + bias
            sweep[tried] = {s: {"mae": m["mae"], "balanced_mae": m["balanced_mae"]}
                            for s, m in metrics_by_source(val_rows, {"age": ages})["per_source"].items()}
        strength = choose_prior_strength(sweep)
        state["prior_correction_sweep"] = {str(t): m for t, m in sweep.items()}
        log("prior correction on the validation faces (strength: MAE / balanced MAE per source): " + "; ".join(
            f"{t}: " + ", ".join(f"{s} {v['mae']:.3f} / {v['balanced_mae']:.3f}" for s, v in m.items())
            for t, m in sweep.items()) + f"; chosen: {strength}")
    if strength == 0:
        log("note: prior correction of strength 0 changes nothing; the model is written without it")
        return model
    corrected = rebuild(model, prior_correction={"prior": prior, "strength": float(strength)})
    state.update(prior_correction={"strength": float(strength), "prior": prior}, model=describe(corrected))
    return corrected


def train(cfg: TrainConfig, log=print) -> dict:
    """Train (or resume) a model; returns the state written to NAME.state.json."""
    from nets.training.data import load_rows

    configure_devices(cfg.gpu, cfg.cpu_devices, cfg.fp16)
    request = check_request(cfg, log)  # everything that would end the run badly, before any data is read
    rows = load_rows(request.cfg.dataset, request.cfg.source, log=log)
    with RunLock(request.cfg.save_path, log):  # makes the -s folder; no other run writes there meanwhile
        return _train(request, rows, log)


def _train(request, rows, log) -> dict:
    import keras
    import pandas as pd

    from nets.training.data import SMOOTH_GENDER, make_dataset, make_or_load_split, row_sources
    from nets.network.model import build_c3ae, describe, load_c3ae
    from nets.evaluation.plots import plot_curves

    cfg, state, parent, teacher = request.cfg, request.state, request.parent, request.teacher
    keras.utils.set_random_seed(cfg.seed)
    strategy = make_strategy(cfg.strategy)
    save_path = Path(cfg.save_path)
    state_path = artifact(save_path, ".state.json")
    last_path = artifact(save_path, ".last.keras")
    started = time.time()

    if cfg.gender:
        known = rows["gender"] >= 0
        if (~known).any():
            log(f"note: {(~known).sum()} faces without a gender label are left out")
        rows = rows[known].reset_index(drop=True)
    split = make_or_load_split(rows, artifact(save_path, ".split.json"), cfg.val_split, cfg.seed, log=log,
                               keep_path=cfg.split_from)
    if len(split.train) == 0 or len(split.val) == 0:
        raise TrainingError("the split has an empty side; more data is needed")
    train_rows, age_weights = balanced_training(split.train, cfg, log)
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and (cfg.batch_size % replicas or min(len(split.train), len(split.val)) < cfg.batch_size):
        raise TrainingError(f"with {replicas} replicas the batch size must be a multiple of {replicas} "
                            "and no larger than either side of the split")
    if replicas > 1:  # every replica needs an equal share of each batch: partial batches are left out
        log(f"{replicas} replicas: the last partial batch of each epoch is left out")
    steps = cfg.steps_per_epoch or (len(train_rows) // cfg.batch_size if replicas > 1
                                    else math.ceil(len(train_rows) / cfg.batch_size))

    initial_epoch = 0
    with strategy.scope():
        if cfg.resume:
            model = load_c3ae(last_path, compile=True)  # with the optimizer state
            initial_epoch = int(state["epochs_done"])
            iterations = int(model.optimizer.iterations)
            if iterations % steps == 0 and iterations // steps != initial_epoch:  # stopped between the saves
                log(f"note: {last_path} holds {iterations // steps} epochs, {state_path} says {initial_epoch}; "
                    f"the model file counts")
                initial_epoch = state["epochs_done"] = iterations // steps
            log(f"resuming {last_path} after epoch {initial_epoch} of {cfg.epochs}")
        else:
            model = build_c3ae(se=cfg.se, white=cfg.white, bins=cfg.bins, gender=cfg.gender,
                               activation=cfg.activation, se_pooling=cfg.se_pooling, neck=cfg.neck,
                               mirror=cfg.mirror, width=cfg.width)
            if parent is not None:
                copied = transfer_weights(parent, model)
                log(f"started from {cfg.pretrain_path}: weights of {copied} layers copied")
                theirs, ours = describe(parent), describe(model)
                differ = [k for k in ("se", "se_pooling", "white", "activation", "neck", "width", "bins") if theirs[k] != ours[k]]
                if theirs["prior_correction"] and not cfg.prior_correction:
                    log(f"note: {cfg.pretrain_path} corrects W1 for the age prior (strength "
                        f"{theirs['prior_correction']['strength']}); this model does not (give --prior-correction)")
                if differ:
                    log(f"note: {cfg.pretrain_path} differs from this model in "
                        + ", ".join(f"{k} ({theirs[k]} there, {ours[k]} here)" for k in differ)
                        + "; the layers that do not match start fresh")
            compile_model(model, cfg, train_rows, steps)
            used = pd.concat([split.train, split.val])
            state = {"config": asdict(cfg), "model": describe(model), "train_faces": len(split.train),
                     "val_faces": len(split.val), **({"train_faces_used": len(train_rows)} if cfg.age_cap else {}),
                     "data": {"sources": pd.Series(row_sources(used)).value_counts().to_dict(),
                              "detectors": used["detector"].value_counts().to_dict()}}
            if cfg.pretrain_path:
                state["pretrained_from"] = pretrain_record(cfg.pretrain_path)
    smooth = SMOOTH_GENDER if cfg.smooth_gender else 0.0
    val_ds = make_dataset(split.val, cfg.batch_size, cfg.bins, cfg.gender, False, smooth=smooth,
                          drop_remainder=replicas > 1)
    if cfg.epochs == 0 and not cfg.resume:
        if cfg.prior_correction:
            model = with_prior_correction(model, cfg.prior_correction, train_rows, split.val, cfg.bins, state, log)
            compile_model(model, cfg, train_rows, steps)  # for its validation MAE
        return _write_untrained(model, cfg, state, val_ds, log)
    if initial_epoch >= cfg.epochs:
        log(f"already trained for {initial_epoch} epochs (--epochs {cfg.epochs}); nothing to do")
        return state

    augment = None
    if cfg.augment:
        augment = AugmentConfig.robust(cfg.erase) if cfg.robust else AugmentConfig(erase_prob=cfg.erase)
        augment = replace(augment, old_print_prob=cfg.old_print,
                          low_res_prob=augment.low_res_prob if cfg.low_res is None else cfg.low_res,
                          grayscale_prob=augment.grayscale_prob if cfg.grey is None else cfg.grey)
    train_ds = make_dataset(train_rows, cfg.batch_size, cfg.bins, cfg.gender, True, augment, cfg.seed, smooth,
                            drop_remainder=replicas > 1, age_weights=age_weights)
    if teacher is not None:
        train_ds = with_teacher(train_ds, teacher, cfg.teacher_weight)
        if not cfg.resume:
            state["teacher"] = pretrain_record(cfg.teacher)
        log(f"learning from the teacher {cfg.teacher}: its answers are {cfg.teacher_weight:g} of the W1"
            + (" and gender" if cfg.gender else "") + " targets")
    if cfg.steps_per_epoch:
        train_ds = train_ds.repeat()
    checkpoint = _checkpoint_callback(cfg, state)
    ema = ema_optimizer(model) is not None  # on resume: as the run being resumed was compiled
    callbacks = [keras.callbacks.SwapEMAWeights()] if ema else []  # validate the averages
    callbacks += [checkpoint, keras.callbacks.CSVLogger(str(artifact(save_path, ".log.csv")),
                                                       append=cfg.resume)]
    log(f"training {describe(model)['params']} parameters on {len(train_rows)} faces, "
        f"validating on {len(split.val)}, {cfg.epochs - initial_epoch} epochs of {steps} steps")
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=initial_epoch,
              steps_per_epoch=steps if cfg.steps_per_epoch else None, callbacks=callbacks, verbose=2, shuffle=False)
    if checkpoint.failure:
        raise TrainingError(checkpoint.failure)
    checkpoint.count_time()
    _write_json(state_path, state)
    plot_curves(*all_epochs(state), artifact(save_path, ".curves.png"), gender=cfg.gender)
    _note_stale_files(save_path, started, log)
    return state
