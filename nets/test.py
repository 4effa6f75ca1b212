#!/usr/bin/env python
"""Estimate age (and gender) of the faces in an image, a folder, a video file or a webcam.

Examples:
  python nets/test.py -i assets/astronaut.jpg
  python nets/test.py --dir photos/ --json --no-show > ages.jsonl
  python nets/test.py -v                 # webcam 0; ESC stops
  python nets/test.py -v clip.mp4 -o annotated.mp4 --no-show

Every age comes with a range that holds the true age for 80 % of faces like the model's validation
faces (--level 0.9: 90 %), from NAME.calibration.json beside the model (nets/calibrate.py makes it).
With the default .tflite model and the YuNet detector nothing imports TensorFlow: numpy,
OpenCV and ai-edge-litert are enough.
"""
import signal
import threading

# A Ctrl-C while the modules load would break an import with a traceback: it waits until they are in
# (where Ctrl-C stops Python as usual; an ignored one stays ignored)
_ctrl_c_while_loading = []
_defer_ctrl_c = (threading.current_thread() is threading.main_thread()
                 and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
if _defer_ctrl_c:
    signal.signal(signal.SIGINT, lambda signum, frame: _ctrl_c_while_loading.append(signum))

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from nets.inference.outputs import say  # noqa: E402  (numpy and OpenCV: parse_args needs them too)
if _defer_ctrl_c:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if _ctrl_c_while_loading:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

REPO_ROOT = Path(__file__).resolve().parents[1]
VIDEO_DETECT_SIZE = 480  # video frames larger than this are detected on a copy of this size (a 640x480 webcam: 480x360)


def parse_args(argv=None):
    # Nothing heavy is imported before the arguments are parsed (detect/ brings numpy and OpenCV,
    # about 0.2 s; the model runtime and the detector come after), so -h and bad flags are quick.
    from detect.detector import DEFAULT_DETECTOR, DETECTORS, MAX_SIDE, MIN_FACE_SIZE, SMALLEST_FACE
    from nets.inference.predict import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--image", help="an image file")
    source.add_argument("--dir", help="a folder: every image in it and its subfolders")
    source.add_argument("-v", "--video", nargs="?", const="0",
                        help="a video file, or a camera index (default: webcam 0)")
    p.add_argument("-m", "--model", default=None,
                   help=".keras or .tflite model (default: the shipped age + gender model, "
                        f"{DEFAULT_MODEL.relative_to(REPO_ROOT)})")
    p.add_argument("-o", "--output", help="annotated output: an image file for -i (default "
                   "runs/NAME_c3ae.jpg), a folder for --dir, a video file for -v")
    p.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                   help=f"face detector: yunet (fast, OpenCV) or mtcnn (the original's, needs TensorFlow); "
                        f"default {DEFAULT_DETECTOR}")
    p.add_argument("--json", action="store_true", help="one JSON object per face on standard output")
    p.add_argument("--no-show", action="store_true", help="do not open a window (headless use)")
    p.add_argument("--min-face-size", type=int, default=MIN_FACE_SIZE,
                   help=f"smallest face to look for, in pixels (at least {SMALLEST_FACE}; default {MIN_FACE_SIZE})")
    p.add_argument("--detect-size", type=int, default=None,
                   help=f"the detector looks at a copy whose longer side is at most this many pixels; faces are "
                        f"still cut from the full image (default: {MAX_SIDE} for photos, {VIDEO_DETECT_SIZE} for "
                        "video, where every millisecond counts)")
    p.add_argument("--level", type=float, default=None,
                   help="coverage of the age range beside every age, one the model was calibrated at (its "
                        "NAME.calibration.json, from nets/calibrate.py): 0.8 means the range holds the true age "
                        "for 80 %% of faces like its validation faces (default: the calibration's, 0.8)")
    p.add_argument("--smooth", type=int, default=15,
                   help="-v: average each person's age and gender over this many frames (1: no averaging; "
                        "default 15)")
    # Flags of the original project; the model file now says what it is, so they change nothing.
    for flag in ("-g", "-se", "-white"):
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.min_face_size < SMALLEST_FACE:
        p.error(f"--min-face-size must be at least {SMALLEST_FACE} pixels")
    if args.smooth < 1:
        p.error("--smooth must be at least 1 frame")
    if args.level is not None and not 0 < args.level < 1:
        p.error(f"--level is a coverage between 0 and 1, such as 0.8 or 0.9, not {args.level:g}")
    if args.detect_size is not None and args.detect_size < 64:
        p.error("--detect-size must be at least 64 pixels")
    if args.detect_size is None:
        args.detect_size = VIDEO_DETECT_SIZE if args.video is not None else MAX_SIDE
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.g or args.se or args.white:
        say("note: -g, -se and -white are not needed: the model file says what it is")
    from detect import DetectorError
    from nets.network.contract import ModelFileError
    from nets.inference.predict import DEFAULT_MODEL, AgeEstimator
    from nets.inference.ranges import CalibrationError

    model = args.model or DEFAULT_MODEL
    try:
        estimator = AgeEstimator(model, detector=args.detector, min_face_size=args.min_face_size,
                                 max_side=args.detect_size, level=args.level)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except ModelFileError as exc:
        hint = " (train one, or give -m)" if args.model is None and not Path(model).exists() else ""
        say(f"error: {exc}{hint}")
        return 1
    except DetectorError as exc:
        say(f"error: {exc}")
        return 1
    except CalibrationError as exc:  # --level at a level the model was not calibrated at
        say(f"error: {exc}")
        return 2
    from nets.inference.outputs import AnswersNotWritten, quiet_standard_output
    from nets.inference.runs import run_folder, run_image, run_video

    run = run_image if args.image else run_folder if args.dir else run_video
    try:
        return run(estimator, args)
    except BrokenPipeError:  # the reader went away (`--json ... | head -1`): stop quietly, as `yes | head` does
        quiet_standard_output()
        return 141  # 128 + SIGPIPE, what a shell reports for a program a closed pipe stops
    except AnswersNotWritten as exc:
        say(f"error: {exc}; stopped")
        return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # while one image is read or analysed, or while starting
        say("interrupted")
        sys.exit(130)
