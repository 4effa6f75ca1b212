"""Command-line flags shared by nets/C3AE.py and nets/C3AE_expand.py, and what they run."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from detect.quiet import caused_by_ctrl_c
from nets.network.contract import TRUNK_WIDTH


def _number(kind, low, high=None, low_open=False):
    """An argparse type: a number of `kind` in [low, high] (low excluded with low_open); NaN and
    infinity are not numbers that train (-lr nan used to run an epoch of NaN)."""
    def parse(text):
        value = kind(text)  # argparse says "invalid ... value" when this fails
        if not math.isfinite(value) or value < low or (low_open and value == low) or (high is not None and value > high):
            span = (f"more than {low}" if low_open else f"{low} or more") if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {span}, not {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def _strength(text):
    """--prior-correction: 'auto' or a number from 0 to 2."""
    return text if text == "auto" else _number(float, 0.0, 2.0)(text)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default once: argparse's "(default: ...)", unless the help text already says it."""

    def _get_help_string(self, action):
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser(description: str, gender: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    # runs/ (not model/, where the shipped models and their cards are kept in git)
    default_save = "runs/c3ae_age_gender.keras" if gender else "runs/c3ae_age.keras"
    p.add_argument("-s", "--save_path", default=default_save,
                   help="where the best model is written (.keras); NAME.last.keras, NAME.split.json, "
                        "NAME.log.csv ... go beside it")
    p.add_argument("-p", "--pretrain_path", default=None,
                   help="start from this model's weights; with -test/-fz: the model to use "
                        "(default: none, training starts from scratch and -test/-fz use -s)")
    p.add_argument("-b", "--batch_size", type=_number(int, 1), default=50, help="faces per training batch")
    p.add_argument("-w", "--weight_factor", type=_number(float, 0.0), default=10.0, help="alpha, the weight of the W1 loss")
    p.add_argument("-c", "--category", type=_number(int, 1), default=10, help="age bins minus 2 (10 -> 12 bins, 10 years apart)")
    p.add_argument("-gpu", action="store_true", help="use the GPU(s) if visible (otherwise the CPU)")
    p.add_argument("-se", action="store_true", help="squeeze-and-excitation blocks")
    p.add_argument("-white", action="store_true", help="white norm: (x - 127.5) / 128 inside the model")
    p.add_argument("--width", type=_number(int, 1), default=TRUNK_WIDTH,
                   help="channels of the trunk's convolutions; wider than the paper's 32 is not compact "
                        "(parameters and time grow about as its square): for teachers and ablations")
    p.add_argument("-d", "--dropout", "--erase", dest="erase", type=_number(float, 0.0, 1.0), default=0.2,
                   help="random erasing, not dropout: the probability of erasing a random rectangle "
                        "in each training crop (-d and --dropout are the original code's names)")
    p.add_argument("-lr", "--learning-rate", dest="lr", type=_number(float, 0.0, low_open=True), default=0.002, help="Adam learning rate")
    p.add_argument("--source", default="utk", help="feather source name or regex, e.g. 'utk|afad'")
    p.add_argument("--dataset", default="dataset/data", help="folder of the feather files (searched recursively)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs; 0 with -p: train nothing, write -p's model in the build the flags ask for "
                        "(default: 250; with --resume: the epochs of the run it continues)")
    p.add_argument("--loss", choices=("kl", "focal"), default="kl",
                   help="loss on W1: KL (paper) or class-balanced focal (original code)")
    p.add_argument("--seed", type=int, default=2019,
                   help="random seed of the train/validation split (saved in NAME.split.json) and of training")
    p.add_argument("--val-split", type=float, default=0.2,
                   help="fraction of the faces held out for validation (a saved NAME.split.json is reused)")
    p.add_argument("--resume", action="store_true", help="continue from NAME.last.keras with its optimizer state")
    p.add_argument("-fp16", action="store_true", help="mixed float16 training (float32 outputs, loss scaling)")
    p.add_argument("-fz", "--freeze", action="store_true", help="export the model to TFLite and check parity")
    p.add_argument("--float16-export", action="store_true", help="with -fz: also write a float16 .tflite")
    p.add_argument("-test", action="store_true", help="evaluate the model on its saved validation split")
    p.add_argument("--lag", nargs="?", const="", default=None, metavar="FOLDER",
                   help="with -test: also the LAG check (the same people young and adult, nets/lag_check.py) on "
                        "this LAG folder (without a folder: dataset/LAG, else ../shared/data/LAG; default: not run)")
    p.add_argument("--mirror", action="store_true",
                   help="average every face with its mirror image inside the model (same weights, twice the "
                        "compute); with -test on a model without it: evaluate that form, NAME.mirror.eval.json")
    p.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                   help="mirrored: tf.distribute.MirroredStrategy over the visible devices")
    p.add_argument("--cpu-devices", type=_number(int, 1), default=1,
                   help="split the CPU into N logical devices (to use --strategy mirrored without GPUs)")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--robust", action="store_true",
                   help="also augment as real photos call for: grey, colour casts, low resolution, JPEG, "
                        "detector box jitter (nets/training/augment.py AugmentConfig.robust)")
    p.add_argument("--split-from", default=None,
                   help="when a new split is made: keep the sides of this earlier NAME.split.json (a model "
                        "trained on its training side is then validated on faces it never saw; default: the -p model's split, "
                        "if it has one)")
    p.add_argument("--cosine-lr", action="store_true", help="cosine learning-rate decay from lr to lr/100")
    p.add_argument("--ema", action="store_true",
                   help="keep a moving average of the weights (momentum 0.99); validation and the best model use it")
    p.add_argument("--steps-per-epoch", type=_number(int, 1), default=None,
                   help="fixed steps per epoch, for quick runs (default: none, every training face once per epoch)")
    p.add_argument("--teacher", default=None,
                   help="a trained C3AE model (e.g. a wider --width one) whose answers on the same augmented "
                        "crops become part of the W1 and gender targets: knowledge distillation (default: none)")
    p.add_argument("--teacher-weight", type=_number(float, 0.0, 1.0), default=0.5,
                   help="the teacher's share of those targets; the true labels keep the rest")
    p.add_argument("--age-cap", type=_number(int, 1), default=None,
                   help="train on at most N faces per year of age and source, drawn with --seed (the original's "
                        "rectify_data, 500 there; default: none, every training face)")
    p.add_argument("--lds", choices=("inverse", "sqrt"), default=None,
                   help="weigh each face's age and W1 losses by its age's smoothed share of the training faces to the "
                        "power -1 or -1/2 (label distribution smoothing, Yang et al. 2021; average 1, at most 5; "
                        "default: none, every face 1)")
    p.add_argument("--lds-sigma", type=_number(float, 0.0), default=2.0,
                   help="with --lds: the Gaussian smoothing of the age histogram, in years")
    p.add_argument("--old-print", type=_number(float, 0.0, 1.0), default=0.0,
                   help="share of training faces made to look like old scanned prints: grey, sepia or faded colour, "
                        "low contrast with a lift, blur, grain, a vignette (nets/training/augment.py old_print)")
    p.add_argument("--low-res", type=_number(float, 0.0, 1.0), default=None,
                   help="share of training faces shrunk 1.5-5x and enlarged back, as a face small in its photo is "
                        "(default: none given, 0.25 with --robust, 0 without)")
    p.add_argument("--grey", type=_number(float, 0.0, 1.0), default=None,
                   help="share of training faces made grey (default: none given, 0.15 with --robust, 0 without); "
                        "more grey faces keep grey photos from being read as old prints")
    p.add_argument("--prior-correction", type=_strength, default=0.0,
                   help="with --epochs 0 -p MODEL: divide W1 by the training faces' share of each age bin to this "
                        "power inside the model (logit adjustment; 0 none, 1 all), or 'auto': the strength with the "
                        "lowest balanced MAE on the validation faces whose plain MAE is at most 0.3 years worse")
    if gender:
        p.add_argument("--loss-weights", type=_number(float, 0.0), nargs=3, default=[1.0, 10.0, 30.0],
                       metavar=("AGE", "W1", "GENDER"), help="weights of the age, W1 and gender losses "
                                                            "(default: 1 10 30)")
        p.add_argument("--mish6", action="store_true", help="Mish6 activation instead of ReLU")
        p.add_argument("--gem", action="store_true", help="GeM pooling inside the SE blocks (needs -se)")
        p.add_argument("--no-smooth", action="store_true", help="hard gender labels instead of 0.99/0.01")
        p.add_argument("--neck", action="store_true",
                       help="the original's 786 K-parameter neck with cosine heads (not compact)")
    return p


def config_from_args(args, gender: bool):
    from nets.training.config import TrainConfig

    extra = {}
    if gender:
        extra = dict(loss_weights=tuple(args.loss_weights), activation="mish6" if args.mish6 else "relu",
                     se_pooling="gem" if args.gem else "avg", smooth_gender=not args.no_smooth, neck=args.neck)
        if args.gem and not args.se:
            raise ValueError("--gem changes the pooling inside SE blocks; add -se")
    return TrainConfig(
        dataset=args.dataset, source=args.source, save_path=args.save_path, pretrain_path=args.pretrain_path,
        gender=gender, se=args.se, white=args.white, category=args.category, loss=args.loss,
        weight_factor=args.weight_factor, batch_size=args.batch_size, epochs=args.epochs, lr=args.lr,
        cosine_lr=args.cosine_lr, ema=args.ema, erase=args.erase, augment=not args.no_augment, seed=args.seed,
        val_split=args.val_split, resume=args.resume, fp16=args.fp16, strategy=args.strategy,
        cpu_devices=args.cpu_devices, gpu=args.gpu, steps_per_epoch=args.steps_per_epoch, mirror=args.mirror,
        robust=args.robust, split_from=args.split_from, width=args.width,
        teacher=args.teacher, teacher_weight=args.teacher_weight, age_cap=args.age_cap, lds=args.lds,
        lds_sigma=args.lds_sigma, old_print=args.old_print, low_res=args.low_res, grey=args.grey,
        prior_correction=args.prior_correction, **extra)


def run_evaluation(model_path, cfg, log, mirror: bool = False, lag: str | None = None) -> dict:
    """-test: metrics of the model on its saved validation split, for all faces and each source, on
    degraded copies, and its steadiness (and with `lag`, a LAG folder or "" for the default one, the
    LAG check); written to NAME.eval.json and NAME.eval.png."""
    from nets.training.data import DataError, load_rows, make_or_load_split
    from nets.evaluation.evaluate import evaluate_model
    from nets.network.model import as_float32, describe, load_c3ae, with_mirror
    from nets.inference.predict import AgeEstimator, KerasRunner
    from nets.evaluation.steadiness import grid_steadiness, landmark_jitter
    from nets.network.contract import artifact

    model = as_float32(load_c3ae(model_path))
    mirror = mirror and not describe(model)["mirror"]  # a mirror model is evaluated as it is
    model = with_mirror(model) if mirror else model
    split_path = artifact(model_path, ".split.json")
    if not split_path.exists():
        if not cfg.split_from:  # a new split would put some of the model's own training faces on the validation side
            raise DataError(f"no {split_path.name} beside {model_path}: the faces it was trained on are unknown, so "
                            "its validation faces are too; give --split-from with the split it was trained with")
        log(f"note: no saved split beside {model_path}; a new one keeps the sides of {cfg.split_from}")
    rows = load_rows(cfg.dataset, cfg.source, log=log)
    split = make_or_load_split(rows, split_path, cfg.val_split, cfg.seed, log=log, keep_path=cfg.split_from)
    if len(split.val) == 0:
        raise ValueError(f"none of the validation faces of {split_path} are in {cfg.dataset} ({cfg.source})")
    partial = split.val_missing > 0  # some data is missing: never in place of the whole record
    detector = split.val["detector"].mode()[0]  # the detector that prepared these faces
    trained_on = trained_detectors(model_path)
    other_detector = trained_on is not None and detector not in trained_on
    prefix = artifact(model_path, (".mirror" if mirror else "") + (".partial" if partial else "")
                      + (f".{detector}-data" if other_detector else ""))
    if partial:
        log(f"note: {len(split.val)} of the {len(split.val) + split.val_missing} validation faces are here, so "
            f"this evaluation is written as {prefix.name}.eval.json, not in place of the model's own record")
    if other_detector:
        log(f"note: these faces were prepared with {detector}, the model's training faces with "
            f"{', '.join(sorted(trained_on))}; this evaluation is written as {prefix.name}.eval.json, not in place "
            "of the model's own record")
    steadiness = {
        "detector": detector,
        "grid": grid_steadiness(AgeEstimator(KerasRunner(model), detector=detector)),
        "landmark_jitter": landmark_jitter(model, split.val),
    }
    extra = {"steadiness": steadiness}
    if lag is not None:
        from nets.evaluation.lag import lag_check

        extra["lag"] = lag_check(KerasRunner(model), lag or None, detector)
    metrics = evaluate_model(model, split.val, prefix, title=Path(model_path).name + (" (mirror-averaged)" if mirror else ""),
                             degraded=True, extra=extra)
    describe_metrics(metrics, log, "validation" + (" (mirror-averaged)" if mirror else ""))
    from nets.inference.ranges import calibration_for

    calibration_note = calibration_for(model_path)[1]  # a new or retrained model needs its age ranges made anew
    if calibration_note:
        log(f"note: {calibration_note}")
    log(f"-> {prefix}.eval.json, {prefix}.eval.png")
    return metrics


def trained_detectors(model_path) -> set | None:
    """The detectors that prepared a model's training faces, from its state file (None if unknown)."""
    from nets.network.contract import artifact

    try:
        detectors = json.loads(artifact(model_path, ".state.json").read_text())["data"]["detectors"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return set(detectors) or None


def validation_rows(model_path, cfg, log, count: int = 500):
    """Up to `count` faces of the model's saved validation split (spread over it) for -fz's parity
    check on real faces; None, with a note, where the data is not here."""
    from nets.training.data import DataError, load_rows, make_or_load_split
    from nets.network.contract import artifact

    split_path = artifact(model_path, ".split.json")
    try:
        if not split_path.exists():
            raise DataError(f"no {split_path.name} beside the model")
        val = make_or_load_split(load_rows(cfg.dataset, cfg.source, log=log), split_path, log=lambda m: None).val
    except DataError as exc:
        log(f"note: no validation faces for the parity check ({exc}); test crops only")
        return None
    return val.iloc[::max(1, len(val) // count)].iloc[:count].reset_index(drop=True) if len(val) else None


def describe_metrics(metrics: dict, log, what: str) -> None:
    """-test's summary for people: all faces, each source, degraded copies, steadiness."""
    def number(value, change=False):
        return "-" if value is None else f"{value:+.3f}" if change else f"{value:.3f}"

    def line(m):
        return (f"{m['faces']} faces, MAE {m['mae']:.3f}, balanced MAE {number(m['balanced_mae'])}, CS(5) {m['cs5']:.3f}"
                + (f", gender accuracy {m['gender_accuracy']:.4f}" if "gender_accuracy" in m else "")
                + (f", gender ECE {m['gender_ece']:.4f}" if "gender_ece" in m else ""))

    def decades(m, key):
        return ", ".join(f"{d} {v[key]:+.1f}" for d, v in m.items())

    log(f"{what}: {line(metrics)}")
    for source, m in metrics["per_source"].items():
        log(f"  {source}: {line(m)}")
        log(f"    signed bias (predicted minus true) per decade: {decades(m['mae_per_decade'], 'bias')}")
    for name, m in metrics.get("degraded", {}).items():
        log(f"  {name}: MAE {m['mae']:.3f} ({m['mae_change']:+.3f}), balanced {number(m['balanced_mae'])} "
            f"({number(m['balanced_mae_change'], True)}), answers moved {m['age_shift']:+.2f} years"
            + (f", gender accuracy {m['gender_accuracy']:.4f}" if "gender_accuracy" in m else ""))
        log(f"    moved per decade: {decades(m['age_shift_per_decade'], 'shift')}")
    lag = metrics.get("lag")
    if lag:
        log(f"  LAG: young photos median {lag['young_median']:.1f} ({lag['young_under_13']:.0%} under 13, "
            f"{lag['young_under_18']:.0%} under 18), adult photos median {lag['adult_median']:.1f}, "
            f"{lag['pairs_in_order']:.1%} of {lag['pairs']} same-person pairs in the right order "
            f"(no face in {lag['not_found']['young']} young and {lag['not_found']['adult']} adult photos)")
    steady = metrics.get("steadiness")
    if steady:
        grid, jitter = steady["grid"], steady["landmark_jitter"]
        log(f"  steadiness: {grid['faces']} of {grid['copies']} copies of the demo face found, ages spread "
            f"{grid['age_spread']} years, {'one gender' if grid['one_gender'] else 'genders differ'}; "
            f"landmarks moved by {jitter['sigma_eye_distances']} eye distances: age spread {jitter['mean_age_spread']:.2f} "
            f"years on average")


def main(argv, description: str, gender: bool) -> int:
    args = build_parser(description, gender).parse_args(argv)  # before TensorFlow: -h and bad flags are quick

    def log(message):
        print(message, file=sys.stderr, flush=True)

    from detect.quiet import start_tensorflow

    try:
        start_tensorflow(args.gpu)
        from nets.training.data import DataError
        from nets.network.model import ModelFileError
        from nets.training.config import TrainingError
        from nets.training.train import configure_devices, train
    except KeyboardInterrupt:
        log("interrupted while TensorFlow was starting")
        return 130

    interrupted = "interrupted" if args.test or args.freeze else \
        "interrupted: the best and last models of finished epochs are kept; --resume continues"
    try:
        cfg = config_from_args(args, gender)
        model_path = args.pretrain_path or args.save_path
        if args.test or args.freeze:
            configure_devices(args.gpu)
            if args.freeze and args.mirror:
                raise ValueError("-fz exports the model as it is, --mirror does not change it; for a mirror form "
                                 f"write a mirror model first (--epochs 0 --mirror -p {model_path} -s NEW.keras) "
                                 "and export that")
            if args.test:
                print(json.dumps(run_evaluation(model_path, cfg, log, args.mirror, args.lag), indent=2))
            if args.freeze:
                from nets.training.export import export_tflite
                from nets.network.model import load_c3ae

                load_c3ae(model_path)  # a damaged model is the one thing said, before any note about data
                report = export_tflite(model_path, float16=args.float16_export, log=log,
                                       rows=validation_rows(model_path, cfg, log))
                print(json.dumps(report, indent=2))
                if not report["parity_ok"]:
                    log("error: a TFLite export disagrees with the Keras model (see above); it was not written")
                    return 1
            return 0
        state = train(cfg, log=log)
        log(f"best validation MAE {state.get('best_val_mae', float('nan')):.3f} at epoch "
            f"{state.get('best_epoch')}; model: {cfg.save_path}")
        return 0
    except (DataError, ModelFileError, TrainingError, ValueError, FileNotFoundError) as exc:
        log(f"error: {exc}")
        return 2
    except OSError as exc:  # a folder that cannot be written (a model beside which -test or -fz writes), a full disk
        log(f"error: {exc.filename + ': ' if exc.filename else ''}{(exc.strerror or str(exc)).lower()}")
        return 1
    except Exception as exc:  # TensorFlow's runtime errors: one line for people, the trace for developers
        import tensorflow as tf

        if caused_by_ctrl_c(exc):
            log(interrupted)
            return 130
        if not isinstance(exc, tf.errors.OpError):
            raise
        log(f"error: TensorFlow stopped: {exc.message.splitlines()[0]}")
        return 1
    except KeyboardInterrupt:
        log(interrupted)
        return 130
