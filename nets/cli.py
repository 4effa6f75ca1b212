"""Command-line flags shared by nets/C3AE.py and nets/C3AE_expand.py, and what they run."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default once: argparse's "(default: ...)", unless the help text already says it."""

    def _get_help_string(self, action):
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser(description: str, gender: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    default_save = "model/c3ae_gender.keras" if gender else "model/c3ae_age.keras"
    p.add_argument("-s", "--save_path", default=default_save,
                   help="where the best model is written (.keras); NAME.last.keras, NAME.split.json, "
                        "NAME.log.csv ... go beside it")
    p.add_argument("-p", "--pretrain_path", default=None,
                   help="start from this model's weights; with -test/-fz: the model to use "
                        "(default: none, training starts from scratch and -test/-fz use -s)")
    p.add_argument("-b", "--batch_size", type=int, default=50, help="faces per training batch")
    p.add_argument("-w", "--weight_factor", type=float, default=10.0, help="alpha, the weight of the W1 loss")
    p.add_argument("-c", "--category", type=int, default=10, help="age bins minus 2 (10 -> 12 bins, 10 years apart)")
    p.add_argument("-gpu", action="store_true", help="use the GPU(s) if visible (otherwise the CPU)")
    p.add_argument("-se", action="store_true", help="squeeze-and-excitation blocks")
    p.add_argument("-white", action="store_true", help="white norm: (x - 127.5) / 128 inside the model")
    p.add_argument("-d", "--dropout", "--erase", dest="erase", type=float, default=0.2,
                   help="random erasing, not dropout: the probability of erasing a random rectangle "
                        "in each training crop (-d and --dropout are the original code's names)")
    p.add_argument("-lr", "--learning-rate", dest="lr", type=float, default=0.002, help="Adam learning rate")
    p.add_argument("--source", default="utk", help="feather source name or regex, e.g. 'utk|afad'")
    p.add_argument("--dataset", default="dataset/data", help="folder of the feather files (searched recursively)")
    p.add_argument("--epochs", type=int, default=250,
                   help="training epochs; 0 with -p: train nothing, write -p's model in the build the flags ask for")
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
    p.add_argument("--mirror", action="store_true",
                   help="average every face with its mirror image inside the model (same weights, twice the "
                        "compute); with -test on a model without it: evaluate that form, NAME.mirror.eval.json")
    p.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                   help="mirrored: tf.distribute.MirroredStrategy over the visible devices")
    p.add_argument("--cpu-devices", type=int, default=1,
                   help="split the CPU into N logical devices (to use --strategy mirrored without GPUs)")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--cosine-lr", action="store_true", help="cosine learning-rate decay from lr to lr/100")
    p.add_argument("--ema", action="store_true",
                   help="keep a moving average of the weights (momentum 0.99); validation and the best model use it")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="fixed steps per epoch, for quick runs (default: none, every training face once per epoch)")
    if gender:
        p.add_argument("--loss-weights", type=float, nargs=3, default=[1.0, 10.0, 30.0],
                       metavar=("AGE", "W1", "GENDER"), help="weights of the age, W1 and gender losses "
                                                            "(default: 1 10 30)")
        p.add_argument("--mish6", action="store_true", help="Mish6 activation instead of ReLU")
        p.add_argument("--gem", action="store_true", help="GeM pooling inside the SE blocks (needs -se)")
        p.add_argument("--no-smooth", action="store_true", help="hard gender labels instead of 0.99/0.01")
        p.add_argument("--neck", action="store_true",
                       help="the original's 786 K-parameter neck with cosine heads (not compact)")
    return p


def config_from_args(args, gender: bool):
    from nets.train import TrainConfig

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
        **extra)


def run_evaluation(model_path, cfg, log, mirror: bool = False) -> dict:
    from nets.data import load_rows, make_or_load_split
    from nets.evaluate import evaluate_model
    from nets.model import as_float32, describe, load_c3ae, with_mirror
    from nets.train import artifact

    model = as_float32(load_c3ae(model_path))
    mirror = mirror and not describe(model)["mirror"]  # a mirror model is evaluated as it is
    model = with_mirror(model) if mirror else model
    split_path = artifact(model_path, ".split.json")
    if not split_path.exists():
        log(f"note: no saved split beside {model_path}; a new one is made with seed {cfg.seed}")
    rows = load_rows(cfg.dataset, cfg.source)
    split = make_or_load_split(rows, split_path, cfg.val_split, cfg.seed, log=log)
    if len(split.val) == 0:
        raise ValueError(f"none of the validation faces of {split_path} are in {cfg.dataset} ({cfg.source})")
    prefix = artifact(model_path, ".mirror" if mirror else "")
    metrics = evaluate_model(model, split.val, prefix, title=Path(model_path).name + (" (mirror-averaged)" if mirror else ""))
    log(f"validation{' (mirror-averaged)' if mirror else ''}: {metrics['faces']} faces, MAE {metrics['mae']:.3f}, CS(5) {metrics['cs5']:.3f}"
        + (f", gender accuracy {metrics['gender_accuracy']:.4f}" if "gender_accuracy" in metrics else "")
        + f" -> {prefix}.eval.json, {prefix}.eval.png")
    return metrics


# TensorFlow's C++ log lines ("I0000 00:00:1795889989.962687    7519 port.cc:153] ...") and the notice
# absl writes before them. TensorFlow logs its start-up notices (oneDNN, "Could not find cuda drivers",
# each twice) before it reads TF_CPP_MIN_LOG_LEVEL, and no environment variable removes them
# (checked with TensorFlow 2.21 on a CPU-only machine: nor does CUDA_VISIBLE_DEVICES remove cuInit's line).
_TF_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
_ABSL_PRELUDE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CUINIT_FAILED = "failed call to cuInit"


def _without_start_up_notices(text: str, gpu: bool) -> str:
    """`text` less the TensorFlow lines below TF_CPP_MIN_LOG_LEVEL (as TensorFlow would have left them out
    had it read it in time: nets/__init__.py sets 2, errors only) and, unless -gpu was asked
    for, CUDA's cuInit error (a machine without a GPU driver; the GPUs go unused anyway).
    Everything else (warnings and errors at the level asked for, Python output) is kept, in order."""
    raw = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    level = int(raw) if raw.isdigit() else 0
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _TF_LOG_LINE.match(line)
        if match:
            dropping = "IWEF".index(match.group(1)) < level or (not gpu and _CUINIT_FAILED in line)
        elif line.rstrip("\n") == _ABSL_PRELUDE:
            dropping = level > 0
        # any other line is kept (Python's output, say), except the second line of a dropped
        # cpu_feature_guard notice
        elif dropping and not line.startswith("To enable the following instructions"):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def _tensorflow_start_up_notices_filtered(gpu: bool):
    """Run the block with file descriptor 2 (where TensorFlow's C++ code writes) captured, then write
    what it captured to stderr without TensorFlow's start-up notices (_without_start_up_notices)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                text = _without_start_up_notices(captured.read().decode(errors="replace"), gpu)
                if text:
                    sys.stderr.write(text)
                    sys.stderr.flush()
    finally:
        os.close(saved)


def main(argv, description: str, gender: bool) -> int:
    args = build_parser(description, gender).parse_args(argv)  # before TensorFlow: -h and bad flags are quick

    def log(message):
        print(message, file=sys.stderr, flush=True)

    with _tensorflow_start_up_notices_filtered(args.gpu):
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # CUDA starts (cuInit) here, once per process
        from nets.data import DataError
        from nets.model import ModelFileError
        from nets.train import TrainingError, configure_devices, train

    try:
        cfg = config_from_args(args, gender)
        model_path = args.pretrain_path or args.save_path
        if args.test or args.freeze:
            configure_devices(args.gpu)
            if args.test:
                print(json.dumps(run_evaluation(model_path, cfg, log, args.mirror), indent=2))
            if args.freeze:
                from nets.export import export_tflite

                report = export_tflite(model_path, float16=args.float16_export, log=log)
                print(json.dumps(report, indent=2))
                if not report["parity_ok"]:
                    log("error: the TFLite model disagrees with the Keras model (see above)")
                    return 1
            return 0
        state = train(cfg, log=log)
        log(f"best validation MAE {state.get('best_val_mae', float('nan')):.3f} at epoch "
            f"{state.get('best_epoch')}; model: {cfg.save_path}")
        return 0
    except (DataError, ModelFileError, TrainingError, ValueError, FileNotFoundError) as exc:
        log(f"error: {exc}")
        return 2
    except Exception as exc:  # TensorFlow's runtime errors: one line for people, the trace for developers
        import tensorflow as tf

        if not isinstance(exc, tf.errors.OpError):
            raise
        log(f"error: TensorFlow stopped: {exc.message.splitlines()[0]}")
        return 1
    except KeyboardInterrupt:
        log("interrupted: the best and last models of finished epochs are kept; --resume continues")
        return 130
